"""The actor's lean passes (workers/lean_forward.py, ``model.lean_forward``): transformers' log-probs and
gradients to rounding, shared and plain passes, without calling the module's forward, and taken only
where they reproduce it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

import workers.lean_forward as lean_mod
import workers.prompt_sharing as sharing
from relift.models.lean_layers import apply_lean_layers
from relift.protocol import DataProto
from tests.test_prompt_sharing import P, R, _batch, _model
from workers.actor import DataParallelActor
from workers.lean_forward import lean_forward_applies


def _llama(**extra):
    torch.manual_seed(4)
    cfg = LlamaConfig(vocab_size=263, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=64, pad_token_id=256, **extra)
    return LlamaForCausalLM(cfg)


def _run(model, data: DataProto, *, lean: bool, share: bool, dtype=torch.float32):
    """Log-probs of a micro-batch and the parameter gradients of a weighted sum of them."""
    actor = DataParallelActor(model, None, {"ppo_micro_batch_size_per_gpu": len(data)})
    actor.share_prompts, actor.lean_forward = share, lean
    model.zero_grad(set_to_none=True)
    weights = torch.randn(len(data), R, generator=torch.Generator().manual_seed(1)).to(dtype)
    lp, _ = actor._forward_micro_batch(data.batch, 0.9, False)
    (lp * weights).sum().backward()
    return lp.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def _assert_close(got, want, rtol=1e-4, atol=1e-5):
    torch.testing.assert_close(got[0], want[0], rtol=rtol, atol=atol)
    assert got[1].keys() == want[1].keys()
    for name in want[1]:
        torch.testing.assert_close(got[1][name], want[1][name], rtol=rtol, atol=atol, msg=name)


def _count_module_forwards(model):
    calls = []
    return calls, model.model.register_forward_hook(lambda *a: calls.append(1))


@pytest.mark.parametrize("share", [True, False])
@pytest.mark.parametrize("arch", ["qwen2-gqa", "llama-bias"])
def test_lean_passes_give_transformers_log_probs_and_gradients(arch, share):
    """Left-padded prompts of 2..6 tokens, responses of 1..7: the lean passes never call the module's
    forward and give its log-probs and every parameter's gradient."""
    model = _model() if arch == "qwen2-gqa" else _llama(attention_bias=True, mlp_bias=True)
    assert lean_forward_applies(model)
    data = _batch(seed=2)
    want = _run(model, data, lean=False, share=share)
    calls, hook = _count_module_forwards(model)
    try:
        got = _run(model, data, lean=True, share=share)
    finally:
        hook.remove()
    assert calls == []  # the lean path really ran
    _assert_close(got, want)
    assert float(want[0].abs().sum()) > 1 and all(float(g.abs().sum()) > 0 for g in want[1].values())


@pytest.mark.parametrize("penalty", [0, 10**6])
def test_one_lean_pass_holds_the_prompts_once_and_every_response_group(monkeypatch, penalty):
    """Responses split by length into groups (penalty 0: wherever a token is saved; 10**6: never), which
    transformers' path runs as separate passes on one prompt cache: the lean path runs the distinct
    prompts and all groups in a single pass, each group one token short of its widest response."""
    monkeypatch.setattr(sharing, "CHUNK_PENALTY_TOKENS", penalty)
    data = _batch(seed=5, n=4)
    model = _model()
    want = _run(model, data, lean=False, share=True)
    seen: list[list[tuple[int, int]]] = []
    layers = lean_mod.LeanLlamaPasses._layers

    def spy(self, ids, positions, segments, *args):
        seen.append([(seg.rows, seg.width) for seg in segments])
        return layers(self, ids, positions, segments, *args)

    monkeypatch.setattr(lean_mod.LeanLlamaPasses, "_layers", spy)
    got = _run(model, data, lean=True, share=True)
    row_widths = data.batch["attention_mask"][:, P:].sum(1)
    widths = sorted(set(row_widths.tolist()))
    assert len(seen) == 1 and seen[0][0] == (4, P)  # one pass; the 4 distinct prompts once
    groups = seen[0][1:]
    if penalty:
        assert groups == [(len(data), max(widths) - 1)]
    else:
        assert sorted(w for _, w in groups) == [w - 1 for w in widths if w > 1] and len(widths) > 2
        assert sum(r for r, _ in groups) == int((row_widths > 1).sum())
    _assert_close(got, want)


def test_unpadded_prompts_take_the_causal_kernel_as_transformers_does():
    """No padding at all: no mask is built (``is_causal``), and the numbers still agree."""
    data = _batch(seed=1)
    b = data.batch
    full = torch.ones_like(b["attention_mask"])
    pos = torch.arange(P + R).expand(len(data), -1).contiguous()
    data = DataProto.from_dict({"input_ids": b["input_ids"], "attention_mask": full, "position_ids": pos,
                                "responses": b["responses"]}, meta_info=data.meta_info)
    assert lean_mod.LeanLlamaPasses._causal_mask(full) is None
    model = _model()
    for share in (True, False):
        _assert_close(_run(model, data, lean=True, share=share), _run(model, data, lean=False, share=share))


def test_bfloat16_parameters_agree_to_bf16_rounding():
    model = _model().to(torch.bfloat16)
    data = _batch(seed=3)
    got = _run(model, data, lean=True, share=True, dtype=torch.bfloat16)
    want = _run(model, data, lean=False, share=True, dtype=torch.bfloat16)
    torch.testing.assert_close(got[0], want[0], rtol=0.05, atol=0.05)
    for name in want[1]:
        torch.testing.assert_close(got[1][name].float(), want[1][name].float(), rtol=0.1, atol=0.02, msg=name)


def test_lean_forward_is_taken_only_where_it_reproduces_the_module():
    assert lean_forward_applies(_model()) and lean_forward_applies(_llama())
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=263, n_embd=32, n_layer=1, n_head=4, n_positions=32))
    assert not lean_forward_applies(gpt2)
    eager = _model()
    eager.config._attn_implementation = "eager"
    assert not lean_forward_applies(eager)
    checkpointed = _model(checkpointing=True)
    assert not lean_forward_applies(checkpointed)
    swapped = _model()
    apply_lean_layers(swapped)  # lean_activations: its own norm and MLP modules
    assert not lean_forward_applies(swapped)

    class LoRALinear(torch.nn.Linear):  # a wrapped projection (an adapter) must keep the module's forward
        pass

    adapted = _model()
    q = adapted.model.layers[1].self_attn.q_proj
    adapted.model.layers[1].self_attn.q_proj = LoRALinear(q.in_features, q.out_features, bias=q.bias is not None)
    assert not lean_forward_applies(adapted)
    sliding = _llama()
    sliding.config.layer_types = ["full_attention", "sliding_attention"]
    assert not lean_forward_applies(sliding)
    dropout = _llama(attention_dropout=0.1)  # transformers drops attention weights in training; the passes do not
    assert not lean_forward_applies(dropout)


def test_the_rms_norm_backward_is_the_derivative():
    """The hand-written RMSNorm backward (float32 training passes) against float64 finite differences,
    and against autograd through ``F.rms_norm`` in float32."""
    from relift.models.llama_ops import _RMSNorm, rms_norm

    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 8, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(8, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: _RMSNorm.apply(a, b, 1e-6), (x, w))
    x32, w32 = x.detach().float().requires_grad_(), w.detach().float().requires_grad_()
    grad = torch.randn(3, 5, 8, generator=g).float()
    ours = torch.autograd.grad(rms_norm(x32, w32, 1e-6), (x32, w32), grad)
    assert rms_norm(x32, w32, 1e-6).grad_fn.name().endswith("_RMSNormBackward")  # really the custom backward
    theirs = torch.autograd.grad(torch.nn.functional.rms_norm(x32, (8,), w32, 1e-6), (x32, w32), grad)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    frozen = torch.autograd.grad(rms_norm(x32, w32.detach(), 1e-6), x32, grad)[0]  # a frozen weight: no weight grad
    torch.testing.assert_close(frozen, ours[0])


def test_the_config_key_reaches_the_actor(tmp_path):
    """``model.lean_forward`` is on in both trainers' yaml; the worker turns the path on for an actor
    whose module it applies to, and false keeps transformers' forward."""
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from relift.models.tiny import build_tiny_model
    from trainer.plan.checker import ConfigChecker
    from trainer.plan.common import check_model
    from workers.fsdp_worker import ActorRolloutRefWorker

    config_dir = Path(__file__).resolve().parents[1] / "trainer" / "config"
    assert OmegaConf.load(config_dir / "rl_trainer.yaml").actor_rollout_ref.model.lean_forward is True
    assert OmegaConf.load(config_dir / "offline_trainer.yaml").model.lean_forward is True
    path = str(build_tiny_model(tmp_path / "m", hidden_size=32, num_layers=1, intermediate_size=64))
    for key in (False, True):
        cfg = {"model": {"path": path, "dtype": "float32", "load_format": "auto", "lean_forward": key}}
        assert check_model(ConfigChecker(cfg), "model")[0].lean_forward is key
    for model, applies in ((_model(), True), (_model(checkpointing=True), False)):
        actor = DataParallelActor(model, None, {})
        for key in (True, False):
            spec = SimpleNamespace(model=SimpleNamespace(use_remove_padding=True, attn_implementation=None,
                                                         share_prompt_prefix=True, lean_forward=key))
            ActorRolloutRefWorker._set_padding_handling(actor, spec)
            assert actor.lean_forward is (key and applies)


def test_the_rollout_prefills_through_the_lean_passes_with_the_same_tokens():
    """The static decode's prefill runs in the lean passes where they apply (the module's forward is
    never called during generation) and samples what the transformers prefill samples."""
    from workers.rollout import HFRollout

    model = _model().eval()
    b = _batch(seed=4).batch
    prompts = DataProto.from_dict({"input_ids": b["input_ids"][:, :P], "attention_mask": b["attention_mask"][:, :P],
                                   "position_ids": b["position_ids"][:, :P]})
    cfg = {"n": 2, "response_length": 10, "temperature": 1.0, "calculate_log_probs": True, "seed": 3}
    lean = HFRollout(model, cfg, pad_token_id=256)
    hf = HFRollout(model, cfg, pad_token_id=256)
    hf.lean_prefill = False
    assert lean.lean_prefill and lean.static_decode
    calls, hook = _count_module_forwards(model)
    try:
        got = lean.generate_sequences(prompts)
    finally:
        hook.remove()
    assert calls == []
    want = hf.generate_sequences(prompts)
    torch.testing.assert_close(got.batch["responses"], want.batch["responses"])
    torch.testing.assert_close(got.batch["rollout_log_probs"], want.batch["rollout_log_probs"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("key", [True, False])
def test_the_rollout_prefill_follows_the_config_key(tmp_path, key):
    from relift.models.tiny import build_tiny_model
    from tests.test_fsdp_worker import make_spec
    from workers.rollout_engine import build_rollout_engine

    path = build_tiny_model(tmp_path / "m", hidden_size=32, num_layers=1, intermediate_size=64)
    spec = make_spec(path)
    model = dataclasses.replace(spec.model, lean_forward=key)
    engine = build_rollout_engine(spec.rollout, model, dp_rank=0, device=torch.device("cpu"), eos_token_ids=[1],
                                  pad_token_id=0)
    assert engine.static_decode and engine.lean_prefill is key


def test_a_training_module_samples_as_in_eval_mode_and_keeps_its_mode():
    """The rollout runs in eval semantics whichever path it takes: the lean path never calls the module
    (so its mode does not matter), and a model with attention dropout keeps transformers' prefill in
    eval mode. Either way the module is left in the mode it came in."""
    from workers.rollout import HFRollout

    b = _batch(seed=4).batch
    prompts = DataProto.from_dict({"input_ids": b["input_ids"][:, :P], "attention_mask": b["attention_mask"][:, :P],
                                   "position_ids": b["position_ids"][:, :P]})
    cfg = {"n": 2, "response_length": 6, "temperature": 1.0, "seed": 3}
    for model, lean in ((_model(), True), (_llama(attention_dropout=0.9), False)):
        want = HFRollout(model.eval(), cfg, pad_token_id=256).generate_sequences(prompts).batch["responses"]
        rollout = HFRollout(model.train(), cfg, pad_token_id=256)
        assert rollout.lean_prefill is lean
        got = rollout.generate_sequences(prompts).batch["responses"]
        assert model.training
        torch.testing.assert_close(got, want)
