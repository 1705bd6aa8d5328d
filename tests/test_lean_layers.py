"""Lean RMSNorm / SwiGLU (model.lean_activations): transformers' outputs bit for bit, its gradients to
rounding, fewer saved tensors, the same parameters; the trainer's actor gets them when asked."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from relift.models.lean_layers import LeanRMSNorm, LeanSwiGLU, apply_lean_layers, supports_lean_layers
from relift.models.tiny import build_tiny_tokenizer, make_tiny_model


def _qwen2():
    return make_tiny_model(build_tiny_tokenizer(), hidden_size=64, num_layers=2, intermediate_size=160, seed=3)


def _llama():
    torch.manual_seed(5)
    cfg = LlamaConfig(vocab_size=97, hidden_size=48, intermediate_size=112, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, mlp_bias=True)
    return LlamaForCausalLM(cfg)


def _batch(vocab: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (4, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[:2, :3] = 0  # left padding
    return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)


def _run(model, ids, mask, pos):
    """Logits, every parameter's gradient of a weighted log-likelihood, and the bytes autograd saved."""
    saved = {}

    def pack(t):
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    model.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        logp = torch.log_softmax(logits.float(), -1)[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)
    (logp * mask[:, 1:] * torch.linspace(-1.0, 2.0, logp.shape[1])).sum().backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters()}
    return logits.detach(), grads, sum(saved.values())


@pytest.mark.parametrize("make", [_qwen2, _llama], ids=["qwen2", "llama"])
def test_lean_layers_give_transformers_logits_exactly_and_its_gradients(make):
    plain = make()
    lean = copy.deepcopy(plain)
    assert apply_lean_layers(lean) == 3 * len(lean.model.layers) + 1
    batch = _batch(plain.config.vocab_size)
    logits_a, grads_a, saved_a = _run(plain, *batch)
    logits_b, grads_b, saved_b = _run(lean, *batch)
    assert torch.equal(logits_a, logits_b)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=1e-4, atol=1e-6, msg=name)
    assert saved_b < 0.9 * saved_a  # the point of it: the normalised input and silu(gate) are not kept


def test_bfloat16_stays_close_to_transformers():
    plain = _qwen2().to(torch.bfloat16)
    lean = copy.deepcopy(plain)
    apply_lean_layers(lean)
    batch = _batch(plain.config.vocab_size, seed=1)
    logits_a, grads_a, _ = _run(plain, *batch)
    logits_b, grads_b, _ = _run(lean, *batch)
    assert torch.equal(logits_a, logits_b)
    for name in grads_a:  # bf16 rounding: the lean backward sums in float32, autograd partly in bf16
        scale = grads_a[name].float().abs().max().clamp(min=1e-3)
        assert float((grads_b[name].float() - grads_a[name].float()).abs().max() / scale) < 0.05, name


def test_the_same_parameters_under_the_same_names():
    model = _qwen2()
    before = dict(model.named_parameters())
    keys = list(model.state_dict().keys())
    apply_lean_layers(model)
    assert list(model.state_dict().keys()) == keys
    assert all(p is before[name] for name, p in model.named_parameters())
    assert isinstance(model.model.layers[0].input_layernorm, LeanRMSNorm)
    assert isinstance(model.model.layers[1].mlp, LeanSwiGLU)
    assert apply_lean_layers(model) == 0  # already swapped: nothing to do


def test_other_architectures_are_left_alone():
    model = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=32, n_layer=1, n_head=2, n_positions=32))
    assert not supports_lean_layers(model)
    assert apply_lean_layers(model) == 0


def test_without_autograd_the_plain_ops_run():
    model = _qwen2()
    apply_lean_layers(model)
    norm = model.model.layers[0].input_layernorm
    x = torch.randn(3, 5, 64, requires_grad=True)
    with torch.no_grad():
        out = norm(x)
    assert out.grad_fn is None
    assert torch.equal(out, norm(x).detach())


def test_the_trainer_actor_gets_lean_layers_only_when_asked(tmp_path):
    from relift.models.tiny import build_tiny_model
    from relift.spec.sections import FSDPSpec
    from trainer.plan.checker import ConfigChecker
    from trainer.plan.common import check_model
    from workers.fsdp_model import build_sharded

    path = str(build_tiny_model(tmp_path / "m", hidden_size=32, num_layers=1, intermediate_size=64))
    fsdp = FSDPSpec(param_offload=False, optimizer_offload=False, mixed_precision="fp32",
                    reshard_after_forward=True, init_on_rank0=False)
    for lean in (None, False, True):  # None: the key left out
        cfg = {"model": {"path": path, "dtype": "float32", "load_format": "auto"}}
        if lean is not None:
            cfg["model"]["lean_activations"] = lean
        spec, _ = check_model(ConfigChecker(cfg), "model")
        assert spec.lean_activations is bool(lean)
        for train in (True, False):
            module = build_sharded(spec, path, fsdp, train=train, rank=0, world_size=1, device=torch.device("cpu"))
            assert isinstance(module.model.layers[0].mlp, LeanSwiGLU) is (bool(lean) and train)
