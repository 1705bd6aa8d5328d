"""Chunked log-probs / entropy vs a full-tensor reference: values, gradients and bounded memory."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from relift.models.logits import entropy_from_logits, logprobs_and_entropy, logprobs_from_logits


def reference(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0):
    """Plain full-tensor log_softmax in float32 (float64 stays float64)."""
    z = logits.double() if logits.dtype == torch.float64 else logits.float()
    logp_all = torch.log_softmax(z / temperature, dim=-1)
    logp = logp_all.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    ent = -(logp_all.exp() * logp_all).sum(-1)
    return logp, ent


@pytest.mark.parametrize("chunk_size", [1, 5, 16, 4096])
@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_values_and_gradients_match_reference(chunk_size, temperature):
    torch.manual_seed(0)
    logits = (torch.randn(3, 9, 50) * 3).requires_grad_(True)
    labels = torch.randint(0, 50, (3, 9))
    w_lp, w_ent = torch.randn(3, 9), torch.randn(3, 9)

    lp, ent = logprobs_and_entropy(logits, labels, temperature, chunk_size)
    r_lp, r_ent = reference(logits, labels, temperature)
    assert lp.dtype == torch.float32 and lp.shape == (3, 9) and ent.shape == (3, 9)
    assert torch.allclose(lp, r_lp, atol=1e-5) and torch.allclose(ent, r_ent, atol=1e-5)

    (g,) = torch.autograd.grad((lp * w_lp).sum() + (ent * w_ent).sum(), logits)
    (r_g,) = torch.autograd.grad((r_lp * w_lp).sum() + (r_ent * w_ent).sum(), logits)
    assert torch.allclose(g, r_g, atol=1e-5)


def test_single_outputs_and_their_gradients():
    torch.manual_seed(1)
    logits = torch.randn(20, 33, requires_grad=True)
    labels = torch.randint(0, 33, (20,))
    r_lp, r_ent = reference(logits, labels, 1.3)

    lp = logprobs_from_logits(logits, labels, 1.3, chunk_size=7)
    (g,) = torch.autograd.grad(lp.sum(), logits)
    (r_g,) = torch.autograd.grad(r_lp.sum(), logits, retain_graph=True)
    assert torch.allclose(lp, r_lp, atol=1e-5) and torch.allclose(g, r_g, atol=1e-5)

    ent = entropy_from_logits(logits, 1.3, chunk_size=7)
    (g,) = torch.autograd.grad(ent.mean(), logits)
    (r_g,) = torch.autograd.grad(r_ent.mean(), logits)
    assert torch.allclose(ent, r_ent, atol=1e-5) and torch.allclose(g, r_g, atol=1e-6)

    # entropy computed but only the log-prob used in the loss
    lp, ent = logprobs_and_entropy(logits, labels, 1.3, chunk_size=7)
    (g,) = torch.autograd.grad(lp.sum(), logits)
    (r_g,) = torch.autograd.grad(reference(logits, labels, 1.3)[0].sum(), logits)
    assert torch.allclose(g, r_g, atol=1e-5)
    assert logprobs_and_entropy(logits, labels, with_entropy=False)[1] is None


@pytest.mark.parametrize("chunk_size", [4, 4096])  # several chunks; one chunk (its gradient buffer is returned)
@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_log_prob_alone_in_one_or_several_chunks(chunk_size, temperature):
    torch.manual_seed(3)
    logits = (torch.randn(3, 5, 40) * 2).requires_grad_(True)
    labels = torch.randint(0, 40, (3, 5))
    labels[0, 1] = -100
    weights = torch.randn(3, 5)
    lp = logprobs_from_logits(logits, labels, temperature, chunk_size=chunk_size)
    (g,) = torch.autograd.grad((lp * weights).sum(), logits)
    r_lp = reference(logits, labels, temperature)[0] * (labels >= 0)
    (r_g,) = torch.autograd.grad((r_lp * weights).sum(), logits)
    assert torch.allclose(lp, r_lp, atol=1e-5) and torch.allclose(g, r_g, atol=1e-5)
    assert g.shape == logits.shape and g.is_contiguous()
    assert float(g[0, 1].abs().sum()) == 0  # the ignored label gets no gradient
    doubles = logits.detach().double().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x: logprobs_from_logits(x, labels, temperature, chunk_size=chunk_size), (doubles,))


def test_gradcheck_float64():
    torch.manual_seed(2)
    logits = torch.randn(2, 3, 6, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 6, (2, 3))
    assert torch.autograd.gradcheck(lambda x: logprobs_and_entropy(x, labels, 0.8, chunk_size=4), (logits,))


def test_bf16_logits_computed_in_float32_with_bf16_gradient():
    torch.manual_seed(3)
    logits = (torch.randn(4, 6, 64) * 4).to(torch.bfloat16).requires_grad_(True)
    labels = torch.randint(0, 64, (4, 6))
    lp, ent = logprobs_and_entropy(logits, labels, chunk_size=5)
    r_lp, r_ent = reference(logits.detach(), labels)  # reference in float32 from the same bf16 values
    assert lp.dtype == torch.float32
    assert torch.allclose(lp, r_lp, atol=1e-5) and torch.allclose(ent, r_ent, atol=1e-5)
    (g,) = torch.autograd.grad(lp.sum() + ent.sum(), logits)
    x32 = logits.detach().float().requires_grad_(True)
    r_lp, r_ent = reference(x32, labels)
    (r_g,) = torch.autograd.grad(r_lp.sum() + r_ent.sum(), x32)
    assert g.dtype == torch.bfloat16
    assert torch.allclose(g.float(), r_g, atol=2e-2, rtol=1e-2)


def test_non_contiguous_response_slice_and_untouched_input():
    """The actor slices logits[:, P-1:P+R-1]; that view is processed without changing the logits."""
    torch.manual_seed(4)
    full = torch.randn(2, 10, 17, requires_grad=True)
    before = full.detach().clone()
    view = full[:, 3:9]
    assert not view.is_contiguous()
    labels = torch.randint(0, 17, (2, 6))
    lp, ent = logprobs_and_entropy(view, labels, chunk_size=4)
    (lp.sum() + ent.sum()).backward()
    r_full = before.clone().requires_grad_(True)
    r_lp, r_ent = reference(r_full[:, 3:9], labels)
    (r_lp.sum() + r_ent.sum()).backward()
    assert torch.allclose(lp, r_lp, atol=1e-5)
    assert torch.allclose(full.grad, r_full.grad, atol=1e-5)
    assert torch.equal(full.detach(), before)


def test_negative_labels_are_ignored():
    torch.manual_seed(5)
    logits = torch.randn(4, 11, requires_grad=True)
    labels = torch.tensor([3, -100, 7, -100])
    lp = logprobs_from_logits(logits, labels, chunk_size=3)
    assert lp[1].item() == 0.0 and lp[3].item() == 0.0
    assert lp[0].item() == pytest.approx(torch.log_softmax(logits[0].detach(), -1)[3].item(), abs=1e-6)
    (g,) = torch.autograd.grad(lp.sum(), logits)
    assert torch.all(g[1] == 0) and torch.all(g[3] == 0) and g[0].abs().sum() > 0


def test_bad_inputs_raise():
    logits = torch.randn(2, 3, 5)
    with pytest.raises(ValueError, match="labels must have shape"):
        logprobs_from_logits(logits, torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="out of range for vocab size 5"):
        logprobs_from_logits(logits, torch.full((2, 3), 5))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        entropy_from_logits(logits, temperature=0.0)
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        entropy_from_logits(logits, chunk_size=0)
    with pytest.raises(ValueError, match="integer tensor"):
        logprobs_from_logits(logits, torch.zeros(2, 3))


class _LargestFloat32(TorchDispatchMode):
    """Records the largest float32 tensor any op produces (a counting stand-in for peak memory)."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.dtype == torch.float32:
                self.largest = max(self.largest, t.numel())
        return out


def test_float32_work_is_bounded_by_the_chunk():
    """bf16 logits [N, V]: no float32 tensor larger than chunk x V exists, forward or backward,
    and autograd keeps no float32 [N, V] tensor alive between them."""
    torch.manual_seed(6)
    N, V, chunk = 96, 500, 8
    logits = torch.randn(N, V).to(torch.bfloat16).requires_grad_(True)
    labels = torch.randint(0, V, (N,))

    saved: list[torch.Tensor] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t)
        return t

    tracker = _LargestFloat32()
    with tracker, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        lp, ent = logprobs_and_entropy(logits, labels, temperature=0.7, chunk_size=chunk)
        loss = lp.sum() + 0.1 * ent.sum()
    saved_f32 = [t.numel() for t in saved if t.dtype == torch.float32]
    assert max(saved_f32, default=0) <= N  # per-token stats only
    with tracker:
        loss.backward()
    assert 0 < tracker.largest <= chunk * V
    assert logits.grad.dtype == torch.bfloat16 and torch.isfinite(logits.grad.float()).all()

    # the same counter sees the full [N, V] float32 tensor in the plain reference (the check can fail)
    ref_tracker = _LargestFloat32()
    with ref_tracker:
        reference(logits.detach(), labels, 0.7)
    assert ref_tracker.largest >= N * V


@pytest.mark.gpu
def test_cuda_peak_memory_is_bounded_by_the_chunk():
    """On CUDA: forward + backward of bf16 logits [N, V] allocate at most the bf16 gradient plus a
    few float32 chunks, far below one float32 [N, V] tensor (what a plain log_softmax keeps)."""
    torch.manual_seed(7)
    N, V, chunk = 16384, 32000, 512
    dev = torch.device("cuda")
    logits = torch.randn(N, V, device=dev, dtype=torch.bfloat16).requires_grad_(True)
    labels = torch.randint(0, V, (N,), device=dev)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    lp, ent = logprobs_and_entropy(logits, labels, temperature=0.9, chunk_size=chunk)
    (lp.sum() + ent.sum()).backward()
    torch.cuda.synchronize()
    peak_extra = torch.cuda.max_memory_allocated() - base
    assert peak_extra < N * V * 2 + 8 * chunk * V * 4 < N * V * 4
    rows = slice(0, 64)
    r_lp, r_ent = reference(logits.detach()[rows], labels[rows], 0.9)
    assert torch.allclose(lp[rows], r_lp, atol=1e-4) and torch.allclose(ent[rows], r_ent, atol=1e-4)
