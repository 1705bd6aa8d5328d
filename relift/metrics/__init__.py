"""Evaluation and performance metrics: pass@k / mean@n / maj@k, validation tables, throughput and MFU."""

from relift.metrics.pass_at_k import is_correct, maj_at_k, mean_at_n, pass_at_k
from relift.metrics.perf import batch_flops, flops_per_token, matmul_params, mfu, peak_flops, tokens_per_second
from relift.metrics.tables import default_ks, summarize_samples, to_markdown, to_metric_dict

__all__ = [
    "batch_flops", "default_ks", "flops_per_token", "is_correct", "maj_at_k", "matmul_params", "mean_at_n",
    "mfu", "pass_at_k", "peak_flops", "summarize_samples", "to_markdown", "to_metric_dict", "tokens_per_second",
]
