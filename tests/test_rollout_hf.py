"""The HF rollout engine (workers/rollout/hf.py) and the shared output assembly (base.py)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from relift.models.tiny import build_tiny_tokenizer, make_tiny_model
from relift.protocol import DataProto
from workers.actor import DataParallelActor
from workers.rollout import HFRollout, RolloutConfig
from workers.rollout.base import build_rollout_output, response_mask_from_eos
from workers.rollout.hf import draw_from, filter_logits

EOS, PAD = 258, 256  # <|im_end|>, <|endoftext|> in the tiny tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    tok = build_tiny_tokenizer()
    assert (tok.eos_token_id, tok.pad_token_id) == (EOS, PAD)
    return tok


@pytest.fixture()
def model(tokenizer):
    return make_tiny_model(tokenizer, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2,
                           intermediate_size=64, tie_word_embeddings=False, seed=0)


class EosAfterTrigger(nn.Module):
    """Test wrapper: boosts EOS right after any input token with id % 4 == 0, so greedy rows stop
    at different, data-dependent steps. Forwards everything else (cache, logits_to_keep) as is."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.generation_config = inner.generation_config
        self.config = inner.config

    def forward(self, input_ids, **kwargs):
        out = self.inner(input_ids=input_ids, **kwargs)
        k = out.logits.shape[1]
        trigger = (input_ids[:, -k:] % 4 == 0).to(out.logits.dtype)
        out.logits[..., EOS] += 30.0 * trigger
        return out


def prompts(tokenizer, texts=("hello", "a longer prompt", "xy"), meta=None) -> DataProto:
    enc = tokenizer(list(texts), return_tensors="pt", padding=True)
    mask = enc["attention_mask"]
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return DataProto.from_dict({"input_ids": enc["input_ids"], "attention_mask": mask, "position_ids": pos},
                               {"uid": [f"u{i}" for i in range(len(texts))]}, meta_info=dict(meta or {}))


def naive_greedy(model, ids, mask, steps):
    """Greedy decoding by full re-computation (no KV cache), one row at a time."""
    out = []
    for row_ids, row_mask in zip(ids, mask):
        seq = row_ids[row_mask.bool()].tolist()
        gen = []
        for _ in range(steps):
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([seq])).logits[0, -1]
            tok = int(logits.argmax())
            gen.append(tok)
            seq.append(tok)
            if tok in (EOS, PAD):
                break
        out.append(gen)
    return out


# ------------------------------------------------------------------------------------- shapes


def test_n_samples_shapes_and_layout(tokenizer, model):
    p = prompts(tokenizer)
    engine = HFRollout(model, {"n": 3, "temperature": 1.0, "response_length": 6}, eos_token_id=EOS,
                       pad_token_id=PAD)
    out = engine.generate_sequences(p)
    b, pw = p.batch["input_ids"].shape
    assert len(out) == 3 * b
    assert out.batch["prompts"].shape == (3 * b, pw) and out.batch["responses"].shape == (3 * b, 6)
    for key in ("input_ids", "attention_mask", "position_ids"):
        assert out.batch[key].shape == (3 * b, pw + 6), key
    assert "rollout_log_probs" not in out.batch.keys()
    assert list(out.non_tensor_batch["uid"]) == ["u0"] * 3 + ["u1"] * 3 + ["u2"] * 3
    torch.testing.assert_close(out.batch["prompts"], p.batch["input_ids"].repeat_interleave(3, dim=0))
    torch.testing.assert_close(out.batch["input_ids"][:, pw:], out.batch["responses"])
    # positions continue from the last prompt position
    last = p.batch["position_ids"][:, -1].repeat_interleave(3)
    torch.testing.assert_close(out.batch["position_ids"][:, pw:], last[:, None] + torch.arange(1, 7))
    # sampling: the three samples of a prompt are not all identical
    assert not torch.equal(out.batch["responses"][0], out.batch["responses"][1]) or \
        not torch.equal(out.batch["responses"][1], out.batch["responses"][2])


def test_greedy_is_deterministic_cached_and_stops_at_eos(tokenizer, model):
    wrapped = EosAfterTrigger(model)
    p = prompts(tokenizer, texts=("hello", "a longer prompt", "xy", "seven 7", "q"))
    engine = HFRollout(wrapped, {"response_length": 12}, eos_token_id=[EOS, PAD], pad_token_id=PAD)
    out1 = engine.generate_sequences(DataProto.from_dict(dict(p.batch.items()), meta_info={"validate": True}))
    out2 = engine.generate_sequences(DataProto.from_dict(dict(p.batch.items()), meta_info={"do_sample": False}))
    torch.testing.assert_close(out1.batch["responses"], out2.batch["responses"])
    expected = naive_greedy(wrapped, p.batch["input_ids"], p.batch["attention_mask"], 12)
    resp, mask = out1.batch["responses"], out1.batch["response_mask"]
    stopped = 0
    for i, gen in enumerate(expected):
        assert resp[i, :len(gen)].tolist() == gen, i  # the KV-cached loop equals full recomputation
        assert mask[i].tolist() == [1] * len(gen) + [0] * (12 - len(gen)), i
        assert resp[i, len(gen):].tolist() == [PAD] * (12 - len(gen)), i
        stopped += gen[-1] == EOS
    assert 2 <= stopped < len(expected), "some rows should stop at EOS and some run to the length limit"
    torch.testing.assert_close(out1.batch["attention_mask"][:, p.batch["input_ids"].shape[1]:], mask)


def test_top_k_one_equals_greedy_and_micro_batching_is_transparent(tokenizer, model):
    p = prompts(tokenizer)
    greedy = HFRollout(model, {"response_length": 8, "do_sample": False}, eos_token_id=EOS,
                       pad_token_id=PAD).generate_sequences(p)
    topk1 = HFRollout(model, {"response_length": 8, "temperature": 1.3, "top_k": 1, "micro_batch_size": 1},
                      eos_token_id=EOS, pad_token_id=PAD).generate_sequences(p)
    torch.testing.assert_close(topk1.batch["responses"], greedy.batch["responses"])


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_rollout_log_probs_match_actor(tokenizer, model, temperature):
    p = prompts(tokenizer, meta={"temperature": temperature})
    engine = HFRollout(EosAfterTrigger(model), {"n": 2, "response_length": 10, "calculate_log_probs": True,
                                                "seed": 3}, eos_token_id=EOS, pad_token_id=PAD)
    out = engine.generate_sequences(p)
    assert out.meta_info["temperature"] == temperature
    actor = DataParallelActor(EosAfterTrigger(model), None,
                              {"ppo_micro_batch_size_per_gpu": 4, "logits_chunk_size": 7})
    log_probs, _ = actor.compute_log_prob(out)
    torch.testing.assert_close(out.batch["rollout_log_probs"], log_probs, atol=1e-5, rtol=1e-5)
    assert bool((out.batch["rollout_log_probs"][out.batch["response_mask"] == 0] == 0).all())
    assert float(out.batch["rollout_log_probs"].min()) < -0.1


def test_seeded_sampling_reproducible(tokenizer, model):
    p = prompts(tokenizer)
    cfg = {"n": 2, "response_length": 6, "seed": 11}
    a = HFRollout(model, cfg, eos_token_id=EOS, pad_token_id=PAD).generate_sequences(p)
    b = HFRollout(model, cfg, eos_token_id=EOS, pad_token_id=PAD).generate_sequences(p)
    torch.testing.assert_close(a.batch["responses"], b.batch["responses"])


# ------------------------------------------------------------------------------------- weights


def test_update_weights_copies_the_actor_in_one_call(tokenizer, model):
    p = prompts(tokenizer)
    other = make_tiny_model(tokenizer, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2,
                            intermediate_size=64, tie_word_embeddings=False, seed=1)
    engine = HFRollout(other, {"response_length": 8, "do_sample": False}, eos_token_id=EOS, pad_token_id=PAD,
                       shares_module=False)
    target = HFRollout(model, {"response_length": 8, "do_sample": False}, eos_token_id=EOS,
                       pad_token_id=PAD).generate_sequences(p)
    assert not torch.equal(engine.generate_sequences(p).batch["responses"], target.batch["responses"])
    engine.update_weights(model.state_dict())
    torch.testing.assert_close(engine.generate_sequences(p).batch["responses"], target.batch["responses"])
    bad = dict(model.state_dict())
    bad.pop("model.norm.weight")
    with pytest.raises(KeyError, match="model.norm.weight"):
        engine.update_weights(bad)


def test_shared_module_sees_actor_updates_without_copy(tokenizer, model):
    engine = HFRollout(model, {"response_length": 4}, eos_token_id=EOS, pad_token_id=PAD)
    before = copy.deepcopy(model.state_dict())
    engine.update_weights({"nonsense": torch.zeros(1)})  # shared: nothing to load, nothing checked
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert engine.module is model


@pytest.mark.parametrize("static_decode", [True, False])
def test_outputs_of_the_inference_mode_decode_train_the_shared_module(tokenizer, model, static_decode):
    """The decode runs under torch.inference_mode; what it returns must still be normal tensors, or
    the update's backward (which saves the token ids) would refuse them."""
    engine = HFRollout(model, {"response_length": 5, "n": 2}, eos_token_id=EOS, pad_token_id=PAD)
    engine.static_decode = static_decode
    out = engine.generate_sequences(prompts(tokenizer, texts=("hello",)))
    assert [k for k, v in out.batch.items() if v.is_inference()] == []
    logits = model(input_ids=out.batch["input_ids"], attention_mask=out.batch["attention_mask"],
                   position_ids=out.batch["position_ids"]).logits
    logits.log_softmax(-1).mean().backward()  # the embedding's backward saves the token ids
    assert model.model.embed_tokens.weight.grad is not None


# ------------------------------------------------------------------------------------- helpers


def test_filter_logits_top_k_and_top_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    keep = torch.isfinite(filter_logits(logits, top_p=0.7))
    assert keep.tolist() == [[True, True, False, False]]  # 0.5 < 0.7 <= 0.8
    keep = torch.isfinite(filter_logits(logits, top_p=0.5))
    assert keep.tolist() == [[True, False, False, False]]
    keep = torch.isfinite(filter_logits(logits, top_k=3))
    assert keep.tolist() == [[True, True, True, False]]
    assert torch.isfinite(filter_logits(logits, top_k=-1, top_p=1.0)).all()


def test_draw_from_matches_the_probabilities_and_never_draws_a_zero():
    probs = torch.tensor([[0.0, 0.5, 0.0, 0.3, 0.2, 0.0],  # zeros first, inside and last
                          [0.1, 0.0, 0.0, 0.0, 0.0, 0.9]])
    draws = 20000
    gen = torch.Generator().manual_seed(3)
    tokens = torch.stack([draw_from(probs, gen) for _ in range(draws)])  # [draws, 2]
    for row in range(2):
        freq = torch.bincount(tokens[:, row], minlength=6).double() / draws
        assert (freq[probs[row] == 0] == 0).all()
        # within 5 binomial standard deviations (about 0.018 at p = 0.5)
        assert ((freq - probs[row].double()).abs() <= 5 * (probs[row] * (1 - probs[row]) / draws).sqrt() + 1e-9).all()
    again = torch.stack([draw_from(probs, torch.Generator().manual_seed(3)) for _ in range(3)])
    assert torch.equal(again[0], tokens[0]) and torch.equal(again[0], again[2])


def test_draw_from_a_uniform_at_its_top_stays_on_a_possible_token(monkeypatch):
    # rand * total can round up to the total; the draw must still land on the last token with mass
    monkeypatch.setattr(torch, "rand", lambda shape, **kw: torch.ones(shape, dtype=kw.get("dtype")))
    probs = torch.tensor([[0.25, 0.75, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.1, 0.2, 0.3, 0.4]])
    assert draw_from(probs).tolist() == [1, 0, 3]


def test_draw_from_refuses_nan_and_empty_rows():
    with pytest.raises(ValueError, match="row 1 of the next-token probabilities sums to nan"):
        draw_from(torch.tensor([[0.5, 0.5], [float("nan"), 0.5]]))
    with pytest.raises(ValueError, match="row 0 .* sums to 0.0"):
        draw_from(torch.zeros(1, 3))


def test_response_mask_and_output_assembly():
    resp = torch.tensor([[5, 9, 2, 9], [9, 1, 1, 1], [3, 4, 6, 7]])
    assert response_mask_from_eos(resp, [9]).tolist() == [[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]]
    p = DataProto.from_dict({"input_ids": torch.tensor([[0, 5], [6, 7]]),
                             "attention_mask": torch.tensor([[0, 1], [1, 1]]),
                             "position_ids": torch.tensor([[0, 0], [0, 1]])}, {"uid": ["a", "b"]})
    settings = RolloutConfig.from_any({"n": 2, "response_length": 3}).settings({})
    out = build_rollout_output(p, [[1, 9, 4], [2], [9], [3, 3, 3, 3]], settings, [9], 0,
                               log_probs=[[-1.0, -2.0, -3.0], [-0.5], [-0.25], [-1, -1, -1, -1]])
    assert out.batch["responses"].tolist() == [[1, 9, 0], [2, 0, 0], [9, 0, 0], [3, 3, 3]]
    assert out.batch["response_mask"].tolist() == [[1, 1, 0], [1, 0, 0], [1, 0, 0], [1, 1, 1]]
    assert out.batch["rollout_log_probs"].tolist() == [[-1.0, -2.0, 0.0], [-0.5, 0, 0], [-0.25, 0, 0], [-1, -1, -1]]
    assert out.batch["position_ids"][2].tolist() == [0, 1, 2, 3, 4]
    assert list(out.non_tensor_batch["uid"]) == ["a", "a", "b", "b"]
    with pytest.raises(ValueError, match="expected 4 responses"):
        build_rollout_output(p, [[1]], settings, [9], 0)


def test_sampling_settings_precedence_and_validation():
    cfg = RolloutConfig.from_any({"n": 8, "temperature": 1.0, "top_p": 0.9, "response_length": 16,
                                  "val_kwargs": {"temperature": 0.6, "do_sample": True, "n": 4},
                                  "gpu_memory_utilization": 0.4})
    train = cfg.settings({})
    assert (train.n, train.temperature, train.top_p, train.greedy) == (8, 1.0, 0.9, False)
    val = cfg.settings({"validate": True})  # val_kwargs not given keep verl's defaults (top_p 1.0)
    assert (val.n, val.temperature, val.top_p, val.greedy) == (4, 0.6, 1.0, False)
    assert cfg.settings({"validate": True, "n": 1}).n == 1
    assert cfg.settings({"do_sample": False}).greedy
    assert cfg.extra == {"gpu_memory_utilization": 0.4}
    with pytest.raises(ValueError, match="top_p"):
        cfg.settings({"top_p": 0.0})
    with pytest.raises(ValueError, match="n must be"):
        cfg.settings({"n": 0})


def test_missing_prompt_keys_and_eos(tokenizer, model):
    engine = HFRollout(model, {"response_length": 2}, eos_token_id=EOS, pad_token_id=PAD)
    p = prompts(tokenizer)
    p.batch.pop("position_ids")
    with pytest.raises(KeyError, match="position_ids"):
        engine.generate_sequences(p)


# ------------------------------------------------------------------------------------- vLLM (GPU)


@pytest.mark.gpu
def test_vllm_greedy_matches_hf_and_weight_sync(tokenizer, tmp_path):
    pytest.importorskip("vllm")
    from transformers import AutoModelForCausalLM

    from relift.models.tiny import build_tiny_model
    from workers.rollout.vllm import VLLMRollout

    path = build_tiny_model(tmp_path / "tiny", seed=0)
    hf_model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).cuda()
    cfg = {"response_length": 8, "do_sample": False, "prompt_length": 32, "dtype": "float32",
           "gpu_memory_utilization": 0.2, "enforce_eager": True, "free_cache_engine": True,
           "calculate_log_probs": True}
    engine = VLLMRollout(str(path), cfg, eos_token_id=[EOS, PAD], pad_token_id=PAD)
    p = prompts(tokenizer)
    hf = HFRollout(hf_model, cfg, eos_token_id=[EOS, PAD], pad_token_id=PAD).generate_sequences(p)
    engine.wake_up()
    out = engine.generate_sequences(p)
    torch.testing.assert_close(out.batch["responses"], hf.batch["responses"])
    # a weight sync from a different model changes the greedy outputs to that model's
    other = make_tiny_model(tokenizer, seed=5).cuda()
    engine.update_weights(other.state_dict())
    synced = engine.generate_sequences(p)
    expected = HFRollout(other, cfg, eos_token_id=[EOS, PAD], pad_token_id=PAD).generate_sequences(p)
    torch.testing.assert_close(synced.batch["responses"], expected.batch["responses"])
    engine.sleep()
