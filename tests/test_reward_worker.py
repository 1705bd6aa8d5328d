"""RewardWorker: decoding that keeps reasoning tags, score placement, per-row fields, timeouts/errors."""

from __future__ import annotations

import textwrap

import pytest
import torch

from relift.protocol import DataProto
from workers.reward_worker import RewardWorker, decode_responses, reward_metrics, score_batch

R = 48


@pytest.fixture(scope="module")
def tokenizer():
    from relift.models.tiny import build_tiny_tokenizer

    return build_tiny_tokenizer()


def make_rows(tokenizer, rows: list[tuple[str, str, str]]) -> DataProto:
    """(data_source, response text, ground truth) -> rollout-shaped DataProto with an EOS per row."""
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    responses = torch.full((len(rows), R), pad, dtype=torch.long)
    mask = torch.zeros(len(rows), R, dtype=torch.long)
    for i, (_, text, _) in enumerate(rows):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][: R - 1] + [eos]
        responses[i, :len(ids)] = torch.tensor(ids)
        mask[i, :len(ids)] = 1
    return DataProto.from_dict(
        {"responses": responses, "response_mask": mask},
        {"data_source": [r[0] for r in rows], "reward_model": [{"ground_truth": r[2], "style": "rule"} for r in rows],
         "extra_info": [{"index": i} for i in range(len(rows))]})


def test_decode_keeps_reasoning_tags_and_drops_special_tokens(tokenizer):
    data = make_rows(tokenizer, [("math", "<think>2+2</think><answer>4</answer>", "4")])
    texts = decode_responses(tokenizer, data.batch["responses"], data.batch["response_mask"])
    assert texts == ["<think>2+2</think><answer>4</answer>"]  # the EOS and the padding are gone


def test_decode_keeps_tags_even_when_they_are_special_tokens():
    from relift.models.tiny import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<think>", "</think>", "<answer>", "</answer>"]},
                           replace_extra_special_tokens=False)
    ids = tok("<think>a</think><answer>b</answer>", add_special_tokens=False)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == "ab"  # what a naive decode would give the scorer
    ids = torch.tensor([ids + [tok.convert_tokens_to_ids("<|im_start|>"), tok.eos_token_id]])
    assert decode_responses(tok, ids, torch.ones_like(ids)) == ["<think>a</think><answer>b</answer>"]


_CUSTOM = textwrap.dedent("""
    import time

    def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
        if "hang" in solution_str:
            time.sleep(60)
        if "boom" in solution_str:
            raise ValueError("scorer exploded")
        ok = solution_str.strip() == str(ground_truth)
        return {"score": 2.0 if ok else -1.0, "note": f"idx{extra_info['index']}"}
""")


@pytest.fixture(scope="module")
def custom_fn(tmp_path_factory):
    path = tmp_path_factory.mktemp("reward") / "my_reward.py"
    path.write_text(_CUSTOM)
    return path


def test_score_batch_with_builtin_scorers(tokenizer):
    from relift.rewards import RewardPool

    rows = [("math", "<think>easy</think> The answer is \\boxed{4}.", "4"),
            ("math", "The answer is \\boxed{5}.", "4"),
            ("kk_logic", "<think>x</think><answer>(1) Zoey is a knight\n(2) Oliver is a knave</answer>",
             "(1) Zoey is a knight\n(2) Oliver is a knave")]
    data = make_rows(tokenizer, rows)
    with RewardPool(num_workers=1, timeout=20) as pool:
        out = score_batch(data, tokenizer, pool)
    scores = out.batch["token_level_scores"]
    lengths = data.batch["response_mask"].sum(-1)
    for i, want in enumerate([1.0, 0.0, 3.0]):
        assert scores[i, lengths[i] - 1] == want
        assert scores[i].sum() == want  # nowhere else
    assert list(out.non_tensor_batch["acc"]) == [1.0, 0.0, 1.0]
    assert out.non_tensor_batch["pred"][0] == "4" and out.non_tensor_batch["pred"][1] == "5"
    assert not any(out.non_tensor_batch["reward_timeout"]) and not any(out.non_tensor_batch["reward_error"])
    assert out.meta_info["metrics"] == {"reward/timeouts": 0, "reward/errors": 0}


def test_custom_function_timeout_and_error_are_scored_zero_and_counted(tokenizer, custom_fn):

    from relift.single_controller import InProcessWorkerGroup, RayClassWithInitArgs

    rows = [("anything", "7", "7"), ("anything", "please hang", "7"), ("anything", "boom", "7"),
            ("anything", "8", "7")]
    data = make_rows(tokenizer, rows)
    from relift.models.tiny import build_tiny_tokenizer
    from relift.spec import CustomRewardSpec, RewardSpec

    spec = RewardSpec(num_workers=2, timeout=2.0, think_format=False, reward_fn_key="data_source",
                      max_error_fraction=0.5, max_error_steps=3,
                      custom_reward_function=CustomRewardSpec(path=str(custom_fn), name="compute_score"))
    tok_dir = custom_fn.parent / "tok"
    build_tiny_tokenizer().save_pretrained(tok_dir)
    group = InProcessWorkerGroup(RayClassWithInitArgs(RewardWorker, spec, str(tok_dir)), world_size=1)
    group.init_model()
    try:
        out = group.compute_score(data)
    finally:
        group.close_pool()
    scores = out.batch["token_level_scores"].sum(-1).tolist()
    assert scores == [2.0, 0.0, 0.0, -1.0]
    assert list(out.non_tensor_batch["reward_timeout"]) == [False, True, False, False]
    assert list(out.non_tensor_batch["reward_error"]) == [False, False, True, False]
    assert list(out.non_tensor_batch["acc"]) == [1.0, 0.0, 0.0, 0.0]  # no acc from the scorer: score > 0
    assert list(out.non_tensor_batch["note"]) == ["idx0", None, None, "idx3"]
    assert out.meta_info["metrics"] == {"reward/timeouts": 1, "reward/errors": 1}
    assert reward_metrics(out) == {"reward/timeouts": 1.0, "reward/errors": 1.0, "reward/error_fraction": 0.5}


def test_missing_columns_are_named(tokenizer):
    data = make_rows(tokenizer, [("math", "x", "1")])
    data.non_tensor_batch.pop("reward_model")
    with pytest.raises(KeyError, match="reward_model"):
        score_batch(data, tokenizer, pool=None)
    bad = make_rows(tokenizer, [("math", "x", "1")])
    bad.non_tensor_batch["reward_model"][0] = {"style": "rule"}
    with pytest.raises(KeyError, match="no 'ground_truth'"):
        score_batch(bad, tokenizer, pool=None)


@pytest.mark.ray
def test_reward_worker_in_a_ray_actor(ray_local, tokenizer, tmp_path):
    import ray

    from relift.single_controller import RayClassWithInitArgs, RayResourcePool, RayWorkerGroup

    tok_dir = tmp_path / "tok"
    tokenizer.save_pretrained(tok_dir)
    from relift.spec import RewardSpec

    spec = RewardSpec(num_workers=1, timeout=20.0, think_format=False, custom_reward_function=None,
                      reward_fn_key="data_source", max_error_fraction=0.5, max_error_steps=3)
    pool = RayResourcePool([1], use_gpu=False)
    group = RayWorkerGroup(pool, RayClassWithInitArgs(ray.remote(RewardWorker), spec, str(tok_dir)))
    try:
        group.init_model()
        data = make_rows(tokenizer, [("math", "\\boxed{12}", "12"), ("aime", "\\boxed{3}", "12")])
        out = group.compute_score(data)
        assert out.batch["token_level_scores"].sum(-1).tolist() == [1.0, 0.0]
        assert list(out.non_tensor_batch["pred"]) == ["12", "3"]
        group.close_pool()
    finally:
        group.shutdown(release_resources=True)
