"""Prompt sharing in the actor's passes (share_prompt_prefix): log-probs and gradients equal the plain
forward's, plain and FSDP2-sharded, and each distinct prompt really runs once."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist

from relift.models.tiny import build_tiny_tokenizer, make_tiny_model
from relift.protocol import DataProto
from workers.actor import DataParallelActor
from workers.prompt_sharing import can_share_prompts, shared_prompt_logits

P, R, N = 6, 7, 3


def _batch(seed: int = 0, n: int = N) -> DataProto:
    """4 prompts of 2..6 tokens (left-padded) x ``n`` samples with responses of 1..7 tokens."""
    g = torch.Generator().manual_seed(seed)
    p_len = torch.tensor([2, 6, 4, 5]).repeat_interleave(n)
    prompts = torch.randint(1, 255, (4, P), generator=g).repeat_interleave(n, dim=0)
    rows = len(p_len)
    r_len = torch.randint(1, R + 1, (rows,), generator=g)
    r_len[0] = R
    cols = torch.arange(P + R)
    mask = torch.cat([cols[None, :P] >= (P - p_len)[:, None], cols[None, :R] < r_len[:, None]], dim=1).long()
    ids = torch.cat([prompts, torch.randint(1, 255, (rows, R), generator=g)], dim=1) * mask
    ids[:, :P][mask[:, :P] == 0] = 256 + torch.arange(rows)[:, None].expand(-1, P)[mask[:, :P] == 0] % 3  # odd pads
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return DataProto.from_dict(
        {"input_ids": ids, "attention_mask": mask, "position_ids": pos, "responses": ids[:, P:]},
        meta_info={"temperature": 0.9},
    )


def _model(seed: int = 0, checkpointing: bool = False):
    model = make_tiny_model(
        build_tiny_tokenizer(),
        hidden_size=32,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        intermediate_size=64,
        tie_word_embeddings=False,
        seed=seed,
    )
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def _log_probs_and_grads(model, data: DataProto, share: bool, lean: bool = False):
    actor = DataParallelActor(model, None, {"ppo_micro_batch_size_per_gpu": len(data)})
    actor.share_prompts, actor.lean_forward = share, lean
    model.zero_grad(set_to_none=True)
    weights = torch.randn(len(data), R, generator=torch.Generator().manual_seed(1))
    lp, _ = actor._forward_micro_batch(data.batch, 0.9, False)
    (lp * weights).sum().backward()
    grads = {}
    for name, p in model.named_parameters():
        grad = p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad
        grads[name] = grad.clone()
    return lp.detach(), grads


def _assert_same(a, b):
    torch.testing.assert_close(a[0], b[0], rtol=1e-5, atol=1e-5)
    assert a[1].keys() == b[1].keys()
    for name in a[1]:
        torch.testing.assert_close(a[1][name], b[1][name], rtol=1e-4, atol=1e-5, msg=name)


def test_shared_prompts_give_the_plain_log_probs_and_gradients():
    data = _batch()
    model = _model()
    shared, plain = _log_probs_and_grads(model, data, True), _log_probs_and_grads(model, data, False)
    _assert_same(shared, plain)
    assert float(plain[0].abs().sum()) > 1 and any(float(g.abs().sum()) > 0 for g in plain[1].values())


def test_each_distinct_prompt_runs_once_and_odd_padding_ids_do_not_split_them():
    data = _batch()
    model = _model()
    seen: list[tuple[int, int]] = []
    hook = model.model.embed_tokens.register_forward_hook(lambda m, args, out: seen.append(tuple(out.shape[:2])))
    try:
        b = data.batch
        logits = shared_prompt_logits(model, b["input_ids"], b["attention_mask"], b["position_ids"], P, R)
    finally:
        hook.remove()
    # 4 prompt rows once, then every response but its last token (which predicts nothing scored)
    assert seen == [(4, P), (4 * N, R - 1)]
    assert logits.shape == (4 * N, R, model.config.vocab_size)
    one = _batch(n=1)  # no prompt repeats: nothing to share, the caller's plain forward runs
    ob = one.batch
    assert shared_prompt_logits(model, ob["input_ids"], ob["attention_mask"], ob["position_ids"], P, R) is None


def test_responses_grouped_by_length_give_the_plain_log_probs_and_gradients(monkeypatch):
    import workers.prompt_sharing as sharing

    data = _batch(seed=5, n=4)
    model = _model()
    plain = _log_probs_and_grads(model, data, False)
    monkeypatch.setattr(sharing, "CHUNK_PENALTY_TOKENS", 0)  # split wherever a token is saved
    seen: list[tuple[int, int]] = []
    hook = model.model.embed_tokens.register_forward_hook(lambda m, args, out: seen.append(tuple(out.shape[:2])))
    try:
        grouped = _log_probs_and_grads(model, data, True)
    finally:
        hook.remove()
    widths = data.batch["attention_mask"][:, P:].sum(1)
    passes = [w - 1 for w in sorted(set(widths.tolist())) if w > 1]  # one token short of each width
    assert len(seen) == 1 + len(passes) > 3  # the prompts once, then one pass per width
    assert sorted(w for _, w in seen[1:]) == passes
    assert sum(r for r, _ in seen[1:]) == int((widths > 1).sum())
    _assert_same(grouped, plain)


@pytest.mark.parametrize("lean", [False, True])
def test_one_token_responses_need_no_response_pass(lean):
    """Every response one token long: the prompt pass predicts it, no response pass runs, and the
    log-probs and gradients are still the plain forward's."""
    data = _batch()
    b = data.batch
    b["attention_mask"][:, P + 1:] = 0
    b["input_ids"][:, P + 1:] = 0
    b["responses"] = b["input_ids"][:, P:]
    model = _model()
    plain = _log_probs_and_grads(model, data, False)
    seen: list[int] = []  # tokens embedded per pass (the lean pass packs them: [tokens, hidden])
    hook = model.model.embed_tokens.register_forward_hook(lambda m, args, out: seen.append(out.shape[:-1].numel()))
    try:
        shared = _log_probs_and_grads(model, data, True, lean=lean)
    finally:
        hook.remove()
    assert seen == [4 * P]  # the 4 distinct prompts, nothing else
    _assert_same(shared, plain)
    assert float(plain[0][:, 0].abs().sum()) > 1 and float(plain[0][:, 1:].abs().sum()) == 0


def test_response_chunks_is_the_cheapest_split_of_the_sorted_rows():
    import itertools
    import random

    from workers.prompt_sharing import response_chunks

    def cost(parts, widths, penalty):
        return sum(len(p) * max(widths[i] for i in p) for p in parts) + penalty * (len(parts) - 1)

    assert [c.tolist() for c in response_chunks(torch.tensor([5, 1, 5, 2, 9, 9, 3]), 3)] == [[1, 3], [6, 0, 2], [4, 5]]
    assert [c.tolist() for c in response_chunks(torch.tensor([5, 1, 5, 2, 9, 9, 3]), 100)] == [[1, 3, 6, 0, 2, 4, 5]]
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(1, 8)
        widths = [rng.randint(1, 10) for _ in range(n)]
        penalty = rng.choice([0, 2, 5, 20])
        parts = [c.tolist() for c in response_chunks(torch.tensor(widths), penalty)]
        assert sorted(sum(parts, [])) == list(range(n))
        ranked = sorted(range(n), key=lambda i: widths[i])
        brute = min(cost([ranked[a:b] for a, b in zip((0, *cuts), (*cuts, n))], widths, penalty)
                    for r in range(n) for cuts in itertools.combinations(range(1, n), r))
        assert cost(parts, widths, penalty) == brute


def test_gradient_checkpointing_keeps_the_plain_forward():
    assert can_share_prompts(_model()) and not can_share_prompts(_model(checkpointing=True))
    assert not can_share_prompts(torch.nn.Linear(2, 2))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_fsdp2_sharded_module_shares_prompts_with_the_same_numbers():
    """Two forwards (prompts, then responses) before one backward under FSDP2 (world size 1 here; the
    worker tests compare world sizes 1 and 2 with sharing on)."""
    from torch.distributed.device_mesh import init_device_mesh

    from relift.utils.fsdp import apply_fsdp2

    if not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ["MASTER_PORT"] = str(_free_port())
        dist.init_process_group("gloo", rank=0, world_size=1)
    if dist.get_world_size() != 1:
        pytest.skip("a process group of another size is already up in this process")
    data = _batch(seed=3)
    plain = _log_probs_and_grads(_model(seed=2), data, False)
    sharded = _model(seed=2)
    apply_fsdp2(sharded, mesh=init_device_mesh("cpu", (1,)))
    _assert_same(_log_probs_and_grads(sharded, data, True), plain)


def test_length_sorted_micro_batches_keep_each_prompt_group_together():
    from workers.actor_batches import micro_batch_groups
    from workers.prompt_sharing import prompt_group_ids

    data = _batch()
    groups = prompt_group_ids(data.batch["input_ids"][:, :P], data.batch["attention_mask"])
    assert groups == sorted(groups, key=lambda g: groups.index(g))  # rows of one prompt are consecutive
    assert len(set(groups)) == 4 and all(groups.count(g) == N for g in groups)
    lengths = data.batch["attention_mask"].sum(-1)
    parts = micro_batch_groups(data, False, N, None, lengths, sort_by_length=True, prompt_groups=groups)
    assert sorted(i for part in parts for i in part) == list(range(4 * N))
    assert all(len({groups[i] for i in part}) == 1 for part in parts)  # one prompt per micro-batch here
    shortest = [min(int(lengths[i]) for i in part) for part in parts]
    assert shortest == sorted(shortest)  # groups ordered by their shortest row
    plain = micro_batch_groups(data, False, N, None, lengths, sort_by_length=True)
    assert any(len({groups[i] for i in part}) > 1 for part in plain)  # the plain sort mixes prompts


def test_token_budget_micro_batches_keep_prompt_groups_and_sort_by_length():
    """With use_dynamic_bsz the runs of the length order hold whole prompt groups where the budget
    allows; the LPT balancing of the unsorted path spreads each prompt over micro-batches."""
    from workers.actor_batches import micro_batch_groups
    from workers.prompt_sharing import prompt_group_ids

    data = _batch(n=4)
    groups = prompt_group_ids(data.batch["input_ids"][:, :P], data.batch["attention_mask"])
    lengths = data.batch["attention_mask"].sum(-1)
    per_group = [int(lengths[[i for i, g in enumerate(groups) if g == k]].sum()) for k in sorted(set(groups))]
    budget = max(a + b for a, b in zip(per_group, per_group[1:])) + max(per_group)  # room for 2-3 groups
    parts = micro_batch_groups(data, True, None, budget, lengths, sort_by_length=True, prompt_groups=groups)
    assert sorted(i for part in parts for i in part) == list(range(len(data)))
    assert all(int(lengths[part].sum()) <= budget for part in parts)
    assert len(parts) == 2  # the fewest runs: the whole batch needs more than one budget

    def spread(ps, g):  # how many micro-batches hold a row of prompt group g
        return sum(any(groups[i] == g for i in part) for part in ps)

    # a group is split only where one run ends and the next begins: at most len(parts) - 1 splits
    split = sum(spread(parts, g) > 1 for g in set(groups))
    assert split <= len(parts) - 1
    lpt = micro_batch_groups(data, True, None, budget, lengths)
    assert sum(spread(lpt, g) > 1 for g in set(groups)) > split


def test_the_update_batch_keeps_prompt_groups_without_a_prompts_key():
    """The update's batch carries input_ids but no "prompts" column: the actor reads each row's
    prompt from input_ids, so its micro-batches (fixed-size and token-budget) keep prompt groups."""
    data = _batch(n=4)
    assert "prompts" not in data.batch.keys()
    groups = [i // 4 for i in range(len(data))]  # _batch puts each prompt's 4 samples side by side

    def split(parts):  # prompt groups spread over more than one micro-batch
        return sum(sum(any(groups[i] == g for i in part) for part in parts) > 1 for g in set(groups))

    actor = DataParallelActor(_model(), None, {"ppo_micro_batch_size_per_gpu": len(data)})
    budget = int(data.batch["attention_mask"].sum()) // 2 + 1
    found = {}
    for share in (True, False):
        actor.share_prompts = share
        _, fixed = actor._micro_batches(data, False, 4, None)
        _, dynamic = actor._micro_batches(data, True, None, budget)
        found[share] = (split(fixed), split(dynamic), len(dynamic))
    assert found[True][0] == 0  # one whole prompt group per fixed-size micro-batch
    assert found[True][1] <= found[True][2] - 1  # token-budget runs split a group only at a run's end
    assert found[False][0] > 0 and found[False][1] > found[True][1]  # by length alone, groups scatter
