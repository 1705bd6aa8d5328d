"""pass@k / mean@n / maj@k, validation summaries and tables, FLOP and MFU helpers."""

from __future__ import annotations

import itertools

import pytest
import torch

from relift.metrics import (
    batch_flops,
    default_ks,
    flops_per_token,
    maj_at_k,
    matmul_params,
    mean_at_n,
    mfu,
    pass_at_k,
    peak_flops,
    summarize_samples,
    to_markdown,
    to_metric_dict,
    tokens_per_second,
)


def brute_force_pass_at_k(n: int, c: int, k: int) -> float:
    """Fraction of all k-subsets of n samples (c of them correct) that hold a correct one."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 5, 8, 10])
def test_pass_at_k_matches_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(n, c, k), abs=1e-12), (n, c, k)


def test_pass_at_k_known_values_and_large_n():
    assert pass_at_k(16, 4, 1) == pytest.approx(0.25)
    assert pass_at_k(10, 0, 5) == 0.0
    assert pass_at_k(10, 6, 5) == 1.0  # n - c = 4 < k: every 5-subset hits a correct one
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)  # 3 of the 6 pairs hold the correct sample
    # n = 1000 stays finite and in [0, 1] (the binomials themselves would overflow floats)
    v = pass_at_k(1000, 3, 500)
    assert 0.0 < v < 1.0 and v == pytest.approx(1 - (500 * 499 * 498) / (1000 * 999 * 998))


def test_pass_at_k_errors():
    with pytest.raises(ValueError, match="0 <= c <= n"):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError, match="1 <= k <= n"):
        pass_at_k(4, 1, 5)
    with pytest.raises(ValueError, match="1 <= k <= n"):
        pass_at_k(4, 1, 0)
    with pytest.raises(ValueError, match="n >= 1"):
        pass_at_k(0, 0, 1)
    with pytest.raises(TypeError, match="integer"):
        pass_at_k(4, 1.5, 1)


def test_mean_and_majority():
    assert mean_at_n([True, False, True, True]) == 0.75
    # "7" appears twice, "3" twice: tie -> first seen ("3", incorrect); None never wins
    assert maj_at_k(["3", "7", None, "7", None, None, "3"], [0, 1, 0, 1, 0, 0, 0]) == 0.0
    assert maj_at_k(["7", "3", "7"], [1, 0, 1]) == 1.0
    assert maj_at_k([None, None, "5"], [0, 0, 1]) == 1.0
    assert maj_at_k([None, None], [0, 0]) == 0.0
    assert maj_at_k(["1", "2", "2"], [1, 0, 0], k=1) == 1.0  # only the first sample counts
    with pytest.raises(ValueError, match="2 predictions but 3"):
        maj_at_k(["1", "2"], [1, 0, 0])
    with pytest.raises(ValueError, match="at least one"):
        mean_at_n([])


def _records():
    # source "aime": 2 prompts x 4 samples ; source "math": 3 prompts x 2 samples
    aime = {0: ([1, 0, 0, 0], ["5", "6", "6", None]), 1: ([0, 0, 0, 0], [None, None, None, None])}
    math = {"a": ([1, 1], ["x", "x"]), "b": ([0, 1], ["y", "z"]), "c": ([0, 0], ["q", "q"])}
    prompts = [(src, pid, corr, preds) for src, group in (("aime", aime), ("math", math))
               for pid, (corr, preds) in group.items()]
    # round-robin over prompts: grouping must not rely on a prompt's samples being adjacent
    recs = []
    for j in range(4):
        for src, pid, corr, preds in prompts:
            if j < len(corr):
                recs.append({"data_source": src, "prompt_id": pid, "correct": bool(corr[j]), "pred": preds[j]})
    return recs


def test_summarize_samples_hand_computed():
    summary = summarize_samples(_records())
    aime, math = summary["aime"], summary["math"]
    assert aime["n"] == 4 and aime["num_prompts"] == 2
    assert aime["mean@4"] == pytest.approx((0.25 + 0.0) / 2)
    assert aime["pass@1"] == pytest.approx(0.125)
    assert aime["pass@2"] == pytest.approx((0.5 + 0.0) / 2)  # pass@2 with c=1 of n=4: 1 - 3/6
    assert aime["pass@4"] == pytest.approx(0.5)
    assert aime["maj@4"] == 0.0  # "6" (wrong) is the majority of prompt 0; prompt 1 has no answer
    assert set(k for k in aime if "@" in k) == {"mean@4", "pass@1", "pass@2", "pass@4", "maj@4"}
    assert math["n"] == 2 and math["num_prompts"] == 3
    assert math["mean@2"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert math["pass@2"] == pytest.approx(2 / 3)
    # "a": x (right) ; "b": tie y (wrong, seen first) vs z ; "c": q (wrong)
    assert math["maj@2"] == pytest.approx(1 / 3)


def test_summarize_samples_custom_ks_and_errors():
    summary = summarize_samples(_records(), ks=[1, 3, 4])
    assert "pass@3" in summary["aime"] and "pass@4" in summary["aime"]
    assert "pass@3" not in summary["math"] and "pass@1" in summary["math"]
    bad = _records() + [{"data_source": "math", "prompt_id": "a", "correct": True}]
    with pytest.raises(ValueError, match="'math'.*different numbers of samples \\[2, 3\\]"):
        summarize_samples(bad)
    with pytest.raises(KeyError, match="record 0 lacks prompt_id"):
        summarize_samples([{"data_source": "x", "correct": 1}])
    assert default_ks(16) == [1, 2, 4, 8, 16] and default_ks(6) == [1, 2, 4, 6] and default_ks(1) == [1]


def test_metric_names_and_markdown():
    summary = summarize_samples(_records())
    metrics = to_metric_dict(summary, var="acc")
    assert metrics["val-core/aime/acc/mean@4"] == pytest.approx(0.125)
    assert metrics["val-core/math/acc/pass@2"] == pytest.approx(2 / 3)
    assert "val-core/aime/acc/n" not in metrics
    table = to_markdown(summary)
    lines = table.splitlines()
    assert lines[0] == "| data_source | prompts | n | mean@n | pass@1 | pass@2 | pass@4 | maj@n |"
    assert lines[2].startswith("| ") and "| 2 | 4 | 12.5 | 12.5 | 25.0 | 50.0 | 0.0 |" in table
    math_line = next(line for line in lines if line.startswith("| math"))
    assert math_line.endswith("|") and "| - |" in math_line  # math has no pass@4


# ----------------------------------------------------------------------------------- perf


def test_matmul_params_match_a_real_model():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(hidden_size=64, intermediate_size=176, num_hidden_layers=3, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=300, max_position_embeddings=128)
    model = Qwen2ForCausalLM(cfg)
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert matmul_params(cfg) == linear
    assert matmul_params(cfg.to_dict()) == linear


def test_flops_and_mfu_arithmetic():
    cfg = {"hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 16,
           "vocab_size": 10}
    n = 2 * (8 * (8 + 8 + 8) + 8 * 8 + 3 * 8 * 16) + 10 * 8  # 2 layers (attn + gated MLP) + LM head
    assert matmul_params(cfg) == n
    assert flops_per_token(cfg, seq_len=5) == pytest.approx(3 * (2 * n + 4 * 2 * 8 * 5))
    assert flops_per_token(cfg, seq_len=5, training=False) == pytest.approx(2 * n + 4 * 2 * 8 * 5)
    assert batch_flops(cfg, [5, 3]) == pytest.approx(5 * flops_per_token(cfg, 5) + 3 * flops_per_token(cfg, 3))
    assert tokens_per_second(1000, 4.0) == 250.0
    assert mfu(4e14, 2.0, 1e14, num_devices=4) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="seconds must be > 0"):
        mfu(1.0, 0.0, 1e12)
    with pytest.raises(ValueError, match="lacks vocab_size"):
        matmul_params({k: v for k, v in cfg.items() if k != "vocab_size"})


def test_peak_flops_lookup():
    assert peak_flops("NVIDIA H100 80GB HBM3") == pytest.approx(989e12)
    assert peak_flops("NVIDIA H100 PCIe") == pytest.approx(756e12)
    assert peak_flops("NVIDIA A100-SXM4-80GB", dtype="bfloat16") == pytest.approx(312e12)
    assert peak_flops("NVIDIA A10G") == pytest.approx(70e12)
    assert peak_flops("Some Unknown Accelerator") is None
    if not torch.cuda.is_available():
        assert peak_flops() is None
