"""ReLIFT demonstrations -> update_sft tensors, on the tiny byte-level tokenizer (token id == byte)."""

from __future__ import annotations

import copy

import pytest
import torch

from relift.algorithms.hardest_buffer import HardestBuffer
from relift.data.demonstrations import (
    build_sft_batch,
    build_sft_batch_from_items,
    encode_demonstration,
    end_of_turn_text,
)
from relift.models.tiny import build_tiny_tokenizer, make_tiny_model

PAD, IM_START, IM_END, THINK, END_THINK = 256, 257, 258, 259, 260


def b(text: str) -> list[int]:
    return list(text.encode())


@pytest.fixture(scope="module")
def tok():
    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def think_tok():
    from dataset.make_think_model import think_chat_template

    t = build_tiny_tokenizer()
    t.chat_template, changed = think_chat_template(t.chat_template)
    assert changed
    return t


@pytest.fixture(scope="module")
def base_eos_tok():
    """Like Qwen2.5-Math base models: EOS is <|endoftext|>, not the end-of-turn <|im_end|>."""
    t = build_tiny_tokenizer()
    t.eos_token = "<|endoftext|>"
    assert t.eos_token_id == PAD
    return t


MSGS = [{"role": "user", "content": "1+1"}]
PROMPT_IDS = [IM_START] + b("user\n1+1") + [IM_END] + b("\n") + [IM_START] + b("assistant\n")


def test_end_of_turn(tok):
    assert end_of_turn_text(tok) == "<|im_end|>\n"
    assert end_of_turn_text(tok, apply_chat_template=False) == ""


def test_completion_is_demo_end_of_turn_and_eos(tok):
    p, c, truncated, stripped = encode_demonstration(tok, MSGS, "two", 64)
    assert p == PROMPT_IDS
    # EOS of the tiny tokenizer is <|im_end|>, already in the end-of-turn: not repeated
    assert c == b("two") + [IM_END] + b("\n")
    assert not truncated and not stripped


def test_eos_appended_when_not_the_end_of_turn(base_eos_tok):
    _, c, _, _ = encode_demonstration(base_eos_tok, MSGS, "two", 64)
    assert c == b("two") + [IM_END] + b("\n") + [PAD]  # <|im_end|>, newline, then EOS, all trained


def test_batch_layout_and_loss_positions(base_eos_tok):
    demos = ["two", [{"role": "assistant", "content": "four!"}]]
    prompts = [MSGS, [{"role": "user", "content": "2+2="}]]
    data, stats = build_sft_batch(base_eos_tok, prompts, demos, max_target_length=12)
    P = len(PROMPT_IDS) + 1  # the second prompt is one byte longer
    assert data.batch["input_ids"].shape == (2, P + 12)
    assert data.batch["responses"].shape == (2, 12)
    mask = data.batch["response_mask"]
    c0 = b("two") + [IM_END, 10, PAD]
    c1 = b("four!") + [IM_END, 10, PAD]
    assert mask[0].tolist() == [1] * len(c0) + [0] * (12 - len(c0))
    assert mask[1].tolist() == [1] * len(c1) + [0] * (12 - len(c1))
    assert data.batch["responses"][0, :len(c0)].tolist() == c0
    # the last trained tokens: <|im_end|>, "\n", EOS
    last = int(mask[1].sum())
    assert data.batch["responses"][1, last - 3:last].tolist() == [IM_END, 10, PAD]
    # prompt left-padded (the first row is one shorter), attention and positions
    am = data.batch["attention_mask"]
    assert am[0, :1].tolist() == [0] and am[0, 1:P].sum() == P - 1 and am[1, :P].sum() == P
    assert data.batch["input_ids"][0, 1:P].tolist() == PROMPT_IDS
    assert torch.equal(am[:, P:], mask)
    assert data.batch["position_ids"][0, 1].item() == 0 and data.batch["position_ids"][0, P].item() == P - 1
    assert stats.num_rows == 2 and stats.num_truncated == 0 and stats.num_tokens == len(c0) + len(c1)
    assert stats.metrics()["relift/sft_tokens"] == len(c0) + len(c1)


def test_truncation_is_counted(tok):
    data, stats = build_sft_batch(tok, [MSGS, MSGS], ["a long demonstration", "ok"], max_target_length=6)
    assert stats.num_truncated == 1
    assert data.batch["responses"][0].tolist() == b("a long")  # cut on the right: no end-of-turn, no EOS
    assert data.batch["response_mask"][0].tolist() == [1] * 6
    assert data.batch["response_mask"][1].tolist() == [1, 1, 1, 1, 0, 0]  # "ok" <|im_end|> "\n"
    assert stats.metrics()["relift/demo_truncated"] == 1


def test_think_prefill_strips_leading_think(think_tok, tok):
    p, c, _, stripped = encode_demonstration(think_tok, MSGS, "<think>\nso 2</think>\\boxed{2}", 64)
    assert p[-2:] == [THINK, 10]  # the prompt ends with the prefilled "<think>\n"
    assert stripped
    assert c == b("so 2") + [END_THINK] + b("\\boxed{2}") + [IM_END, 10]
    # without the prefill the demonstration keeps its own <think>
    p2, c2, _, stripped2 = encode_demonstration(tok, MSGS, "<think>\nso 2</think>\\boxed{2}", 64)
    assert not stripped2 and c2[:2] == [THINK, 10]
    # a demonstration stored without the tag (ReLIFT's data) is unchanged
    _, c3, _, stripped3 = encode_demonstration(think_tok, MSGS, "so 2</think>\\boxed{2}", 64)
    assert not stripped3 and c3 == c


def test_string_prompt_used_as_is(tok):
    p, c, _, _ = encode_demonstration(tok, "Q: 1+1\nA:", " 2", 8, apply_chat_template=False)
    assert p == b("Q: 1+1\nA:")
    assert c == b(" 2") + [IM_END]  # no template: the demonstration + EOS


def test_errors_name_the_row(tok):
    with pytest.raises(ValueError, match="row 1"):
        build_sft_batch(tok, [MSGS, MSGS], ["ok", None], max_target_length=8)
    with pytest.raises(ValueError, match="max_prompt_length"):
        build_sft_batch(tok, [MSGS], ["ok"], max_target_length=8, max_prompt_length=4)
    with pytest.raises(ValueError, match="no demonstrations"):
        build_sft_batch(tok, [], [], max_target_length=8)


def test_from_buffer_items_and_update_sft(tok):
    """Buffer -> batch -> the actor's update_sft: the loss covers exactly the demonstration tokens."""
    from workers.actor import DataParallelActor

    buf = HardestBuffer(sft_batch_size=2)
    uids = ["a", "a", "b", "b", "c", "c"]
    payloads = [{"raw_prompt": [{"role": "user", "content": q}]} for q in ["1+1", "1+1", "2+3", "2+3", "9", "9"]]
    buf.add_batch(uids, [0, 0, 0, 0, 1, 1], ["two"] * 2 + ["five"] * 2 + ["nine"] * 2, payloads)
    items = buf.pop_batch()
    data, stats = build_sft_batch_from_items(tok, items, max_target_length=10)
    assert stats.num_tokens == len("two") + 2 + len("five") + 2
    model = make_tiny_model(tok, hidden_size=32, num_layers=1, num_heads=4, num_kv_heads=2, intermediate_size=64,
                            seed=0)
    cfg = {"ppo_mini_batch_size": 2, "ppo_micro_batch_size_per_gpu": 1, "sft_entropy_coeff": 0.001}
    actor = DataParallelActor(copy.deepcopy(model), torch.optim.SGD(model.parameters(), lr=0.0), cfg)
    actor.module = model
    metrics = actor.update_sft(data)
    assert metrics["sft/num_tokens"] == [float(stats.num_tokens)]
    # the NLL equals the token-mean of -log p over the masked positions, computed independently
    with torch.no_grad():
        logits = model(input_ids=data.batch["input_ids"], attention_mask=data.batch["attention_mask"],
                       position_ids=data.batch["position_ids"]).logits.float()
        P = data.batch["input_ids"].shape[1] - 10
        logp = torch.log_softmax(logits[:, P - 1:-1], dim=-1).gather(-1, data.batch["responses"][..., None])[..., 0]
        m = data.batch["response_mask"].float()
        expected = float(-(logp * m).sum() / m.sum())
    assert metrics["sft/loss"][0] == pytest.approx(expected, rel=1e-4)
    with pytest.raises(KeyError, match="raw_prompt"):
        build_sft_batch_from_items(tok, items, max_target_length=10, prompt_key="prompt")
