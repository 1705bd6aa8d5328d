"""What one sampled token per row costs: ``torch.multinomial`` against the rollout's ``draw_from``
(one uniform per row against the float64 cumulative sum), issue 18.4.

On CPU ``torch.multinomial`` draws one exponential per vocabulary entry and row (its sampling is
without replacement), so its cost grows with the vocabulary; ``draw_from`` draws one number per row.
Shapes: the tiny bench job (32 rows x 263 tokens), the small one (256 x 263), and a Qwen2.5
vocabulary (32 x 151936). Both run alternately; the fastest of ``--repeats`` means is printed.

    python bench/bench_sampling.py
    python bench/bench_sampling.py --threads 2 --repeats 5
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from workers.rollout.hf import draw_from  # noqa: E402

SHAPES = [(32, 263), (256, 263), (32, 151936)]


def _mean_us(fn: Callable[[], object], calls: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} thread(s); microseconds per call (fastest of {args.repeats})")
    print("| rows x vocab | torch.multinomial | draw_from | ratio |")
    print("|---|---:|---:|---:|")
    for rows, vocab in SHAPES:
        probs = torch.softmax(torch.randn(rows, vocab, generator=gen), dim=-1)
        calls = 20 if vocab > 10_000 else 200
        multinomial, inverse = [], []
        for _ in range(args.repeats):
            multinomial.append(_mean_us(lambda p=probs: torch.multinomial(p, 1, generator=gen), calls))
            inverse.append(_mean_us(lambda p=probs: draw_from(p, gen), calls))
        a, b = min(multinomial), min(inverse)
        print(f"| {rows} x {vocab} | {a:.1f} | {b:.1f} | {b / a:.2f}x |")


if __name__ == "__main__":
    main()
