"""What ``trainer.balance_batch`` buys and costs on GRPO-shaped batches (not a test).

A step's batch is 1024 sequences (128 prompts x 8 samples, the 7B recipes) split over 8 or 16
workers. Response lengths are drawn per prompt family: a prompt is "easy" (responses around 1-2k
tokens) or "hard" (a third of its responses hit the 8192-token limit), the shape long-CoT math
rollouts have. Each worker waits for the slowest, so the number that matters is the heaviest
worker's tokens over the mean (1.0 = perfect). Reports that ratio in sampler order and after
balancing, and the time the partition takes on the driver (median of --repeats).

    .venv/bin/python bench/bench_balance_batch.py --repeats 50
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time

from relift.utils.seqlen_balancing import balance_permutation, partition_stats


def grpo_lengths(rng: random.Random, prompts: int, n: int, prompt_len: int = 300, limit: int = 8192) -> list[int]:
    """Prompt + response lengths, ``n`` consecutive samples per prompt (interleaved like the rollout)."""
    out = []
    for _ in range(prompts):
        hard = rng.random() < 0.4
        base = rng.randint(2500, 5000) if hard else rng.randint(700, 2000)
        for _ in range(n):
            resp = limit if hard and rng.random() < 0.33 else min(limit, max(50, int(rng.gauss(base, base / 3))))
            out.append(prompt_len + resp)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=128)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    rows = []
    for workers in (8, 16):
        before, after, ms = [], [], []
        for _ in range(args.repeats):
            lens = grpo_lengths(rng, args.prompts, args.n)
            t0 = time.perf_counter()
            order = balance_permutation(lens, workers)
            ms.append((time.perf_counter() - t0) * 1e3)
            b = partition_stats(lens, workers)
            a = partition_stats(lens, workers, order)
            before.append(b["global_seqlen/max"] / b["global_seqlen/mean"])
            after.append(a["global_seqlen/max"] / a["global_seqlen/mean"])
        rows.append({"sequences": args.prompts * args.n, "workers": workers,
                     "max_over_mean_sampler_order": round(statistics.median(before), 3),
                     "max_over_mean_balanced": round(statistics.median(after), 4),
                     "partition_ms": round(statistics.median(ms), 2)})
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
