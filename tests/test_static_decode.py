"""The lean static-cache decode step (workers/rollout/static_decode.py) against the HF forward."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

import workers.rollout.hf as hf
from relift.models.tiny import build_tiny_tokenizer, make_tiny_model
from relift.protocol import DataProto
from workers.actor import DataParallelActor
from workers.rollout import HFRollout
from workers.rollout.static_decode import StaticDecoder, supports_static_decode

PAD = 256


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


def _qwen(tokenizer):
    return make_tiny_model(
        tokenizer,
        hidden_size=32,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        intermediate_size=64,
        tie_word_embeddings=False,
        seed=0,
    ).eval()


# the shape of the hand-built (non-tiny-tokenizer) configs below
SMALL = dict(vocab_size=263, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=4)


def _llama():
    torch.manual_seed(1)
    return LlamaForCausalLM(LlamaConfig(**SMALL, max_position_embeddings=64, pad_token_id=PAD)).eval()


def _prompts(tokenizer, texts=("hello", "a longer prompt", "xy", "seven 7")):
    enc = tokenizer(list(texts), return_tensors="pt", padding=True)
    mask = enc["attention_mask"]
    return enc["input_ids"], mask, (mask.cumsum(-1) - 1).clamp(min=0)


def _full_forward_last_logits(model, ids, mask, pos):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, -1]


@pytest.mark.parametrize("attention", ["matmul", "sdpa"])
@pytest.mark.parametrize("arch", ["qwen2-gqa", "llama"])
@pytest.mark.parametrize("repeats", [1, 2])
def test_decode_steps_match_the_full_forward(tokenizer, arch, attention, repeats):
    """Every step's logits equal a no-cache HF forward over prompt + fed tokens, also after rows
    leave the batch; the decoder reads the module's own tensors (an in-place change is seen). Both
    attention paths (matmul with an additive bias: CPU; SDPA: other devices), and a prefill that
    ran each prompt once for ``repeats`` decode rows."""
    model = _qwen(tokenizer) if arch == "qwen2-gqa" else _llama()
    assert supports_static_decode(model)
    ids, mask, pos = _prompts(tokenizer)
    dec = StaticDecoder(model, ids.shape[1] + 6)
    with torch.no_grad():  # an optimiser step after the decoder was built: it must see the new weights
        model.model.layers[0].mlp.up_proj.weight.mul_(1.5)
        prefill = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
    ids, mask, pos = (t.repeat_interleave(repeats, dim=0) for t in (ids, mask, pos))
    dec.start([(layer.keys, layer.values) for layer in prefill.past_key_values.layers], mask, repeats)
    assert dec.bias is not None and dec.mask is None  # CPU: the matmul path
    if attention == "sdpa":  # the other devices' path: the boolean mask the bias encodes
        dec.mask, dec.bias = dec.bias[:, :1] == 0, None
    gen = torch.Generator().manual_seed(0)
    rows = torch.arange(ids.shape[0])
    for step in range(5):
        fed = torch.randint(0, 250, (len(rows),), generator=gen)
        ids = torch.cat([ids, fed[:, None]], dim=1)
        mask = torch.cat([mask, torch.ones(len(rows), 1, dtype=mask.dtype)], dim=1)
        pos = torch.cat([pos, pos[:, -1:] + 1], dim=1)
        got = dec.step(fed, pos[:, -1])
        want = _full_forward_last_logits(model, ids, mask, pos)
        torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)
        if step == 1:  # rows 1 and 3 finish: the cache keeps rows 0 and 2 (and the last one)
            keep = torch.tensor([0, 2, len(rows) - 1])
            dec.keep(keep)
            ids, mask, pos, rows = ids[keep], mask[keep], pos[keep], rows[keep]
    assert dec.length == ids.shape[1]


def test_rollout_through_the_static_path_equals_the_hf_loop_and_the_actor(tokenizer, monkeypatch):
    """Sampled rollouts with rows stopping at spread-out steps (and pruned at once): the static
    path draws the same tokens as the HF loop, and its log-probs equal an independent actor pass."""
    monkeypatch.setattr(hf, "PRUNE_FRACTION", 1)
    model = _qwen(tokenizer)
    ids, mask, pos = _prompts(tokenizer)
    p = DataProto.from_dict(
        {"input_ids": ids, "attention_mask": mask, "position_ids": pos}, {"uid": [f"u{i}" for i in range(len(ids))]}
    )
    eos = list(range(3, 256, 9))  # ~11% of the vocabulary ends a row
    cfg = {"n": 3, "response_length": 16, "temperature": 1.0, "calculate_log_probs": True, "seed": 5}
    static = HFRollout(model, cfg, eos_token_id=eos, pad_token_id=PAD)
    plain = HFRollout(model, cfg, eos_token_id=eos, pad_token_id=PAD)
    plain.static_decode = False
    assert static.static_decode
    a, b = static.generate_sequences(p), plain.generate_sequences(p)
    lengths = a.batch["response_mask"].sum(-1)
    assert 1 <= int(lengths.min()) < 16 and int(lengths.max()) == 16 and len(set(lengths.tolist())) >= 4
    torch.testing.assert_close(a.batch["responses"], b.batch["responses"])
    torch.testing.assert_close(a.batch["rollout_log_probs"], b.batch["rollout_log_probs"], atol=1e-5, rtol=1e-5)
    actor = DataParallelActor(model, None, {"ppo_micro_batch_size_per_gpu": 5})
    log_probs, _ = actor.compute_log_prob(a)
    torch.testing.assert_close(a.batch["rollout_log_probs"], log_probs, atol=1e-5, rtol=1e-5)


class _NoRepeatCache:
    """A cache without ``batch_repeat_interleave`` (the rollout must prefill every row then)."""

    def __init__(self, inner):
        self.inner = inner

    def batch_select_indices(self, rows):
        self.inner.batch_select_indices(rows)


class _NoRepeatModel(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.config, self.generation_config = inner, inner.config, inner.generation_config

    def forward(self, past_key_values=None, **kwargs):
        if isinstance(past_key_values, _NoRepeatCache):
            past_key_values = past_key_values.inner
        out = self.inner(past_key_values=past_key_values, **kwargs)
        out.past_key_values = _NoRepeatCache(out.past_key_values)
        return out


@pytest.mark.parametrize("static", [True, False, "no-repeat-cache"])
def test_prefill_once_per_prompt_without_shared_padding_draws_the_same_tokens(tokenizer, static):
    """``n`` samples per prompt (the prefill runs each prompt once, its cache repeated) equal the
    same prompts repeated by hand with ``n = 1`` (every row prefilled), also with extra left-padding
    columns that every prompt shares (trimmed before the prefill)."""
    model = _qwen(tokenizer)
    ids, mask, pos = _prompts(tokenizer)
    eos = list(range(3, 256, 9))
    cfg = {"response_length": 12, "temperature": 1.0, "calculate_log_probs": True, "seed": 11}

    def rollout(ids, mask, pos, n):
        module = _NoRepeatModel(model) if static == "no-repeat-cache" else model
        engine = HFRollout(module, {**cfg, "n": n}, eos_token_id=eos, pad_token_id=PAD)
        engine.static_decode = static is True
        return engine.generate_sequences(DataProto.from_dict({"input_ids": ids, "attention_mask": mask,
                                                              "position_ids": pos}))

    shared = rollout(ids, mask, pos, 3)
    by_hand = rollout(*(t.repeat_interleave(3, dim=0) for t in (ids, mask, pos)), 1)
    pad = 3
    padded = rollout(torch.cat([torch.full((len(ids), pad), PAD), ids], dim=1),
                     torch.cat([torch.zeros(len(ids), pad, dtype=mask.dtype), mask], dim=1),
                     torch.cat([torch.zeros(len(ids), pad, dtype=pos.dtype), pos], dim=1), 3)
    lengths = shared.batch["response_mask"].sum(-1)
    assert len(set(lengths.tolist())) >= 3  # rows stop at several steps
    for other in (by_hand, padded):
        torch.testing.assert_close(other.batch["responses"], shared.batch["responses"])
        torch.testing.assert_close(other.batch["rollout_log_probs"], shared.batch["rollout_log_probs"],
                                   atol=1e-5, rtol=1e-5)
    assert padded.batch["prompts"].shape[1] == ids.shape[1] + pad  # the output keeps the input's layout


def test_only_plain_llama_shaped_models_are_taken(tokenizer):
    assert supports_static_decode(Qwen2ForCausalLM(Qwen2Config(**SMALL)))
    sliding = Qwen2ForCausalLM(Qwen2Config(**SMALL, use_sliding_window=True, sliding_window=8, max_window_layers=0))
    assert not supports_static_decode(sliding)
    assert not supports_static_decode(LlamaForCausalLM(LlamaConfig(**SMALL, hidden_act="gelu")))
    assert not supports_static_decode(GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=4, vocab_size=263)))

    class Wrapper(torch.nn.Module):  # a wrapper that changes logits must keep the HF loop
        def __init__(self, inner):
            super().__init__()
            self.inner, self.config = inner, inner.config

    assert not supports_static_decode(Wrapper(_qwen(tokenizer)))
