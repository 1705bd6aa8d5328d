"""Reward scoring throughput: in-process loop vs RewardPool, on MATH-500 answers.

Builds ``--n`` responses from MATH-500 (cycling the 500 problems): a third the boxed reference
answer after a ``<think>`` block, a third the dataset's worked solution, a third another problem's
answer (wrong), and scores them with ``data_source="math"``.  Worker start-up is timed separately
(``wait_ready``) and left out of the throughput.

    .venv/bin/python bench/bench_reward_pool.py --n 2000 --workers 2

``--hangs H`` times instead one batch of ``--n`` samples in which H answers make sympy hang
(``\\boxed{9^{9^{9^{9^{9}}}}}``), against ``--timeout``: the hang-bound check of issue 19 item 4
(a hung scorer costs at most about its timeout, whatever H)::

    .venv/bin/python bench/bench_reward_pool.py --n 24 --workers 2 --hangs 8 --timeout 3 --skip-direct
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from relift.rewards import RewardPool, compute_score  # noqa: E402

DEFAULT_DATA = Path(os.environ.get("RELIFT_SHARED_DATA", REPO.parent / "shared" / "data"))


def build_samples(path: Path, n: int) -> tuple[list[str], list[str], list[str]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    responses, truths = [], []
    for k in range(n):
        row = rows[k % len(rows)]
        kind = (k // len(rows) + k) % 3
        if kind == 0:
            responses.append(f"<think>\nworking\n</think>\nThe answer is $\\boxed{{{row['answer']}}}$.")
        elif kind == 1:
            responses.append(row["solution"])
        else:
            responses.append(f"<think>x</think>\\boxed{{{rows[(k + 7) % len(rows)]['answer']}}}")
        truths.append(row["answer"])
    return ["math"] * n, responses, truths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="samples to score")
    parser.add_argument("--workers", type=int, nargs="+", default=[2], help="pool sizes to try")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA / "benchmarks" / "math500.jsonl")
    parser.add_argument("--skip-direct", action="store_true", help="skip the in-process baseline")
    parser.add_argument("--hangs", type=int, default=0, help="samples (of --n) whose scorer hangs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if args.hangs:
        bench_hangs(args)
        return

    sources, responses, truths = build_samples(args.data, args.n)
    table = []
    if not args.skip_direct:
        start = time.perf_counter()
        scores = [compute_score(s, r, g)["score"] for s, r, g in zip(sources, responses, truths)]
        wall = time.perf_counter() - start
        table.append(("in-process loop", "-", wall, args.n / wall, 0, 0, sum(scores) / args.n))
    for workers in args.workers:
        start = time.perf_counter()
        with RewardPool(num_workers=workers, timeout=args.timeout) as pool:
            pool.wait_ready()
            startup = time.perf_counter() - start
            start = time.perf_counter()
            out = pool.score(sources, responses, truths)
            wall = time.perf_counter() - start
            stats = dict(pool.stats)
        table.append((f"RewardPool({workers})", f"{startup:.2f}", wall, args.n / wall,
                      stats["reward/timeouts"], stats["reward/errors"],
                      sum(r["score"] for r in out) / args.n))

    print(f"\nreward scoring throughput, {args.n} MATH-500 samples, cpus={os.cpu_count()}")
    header = ("scorer", "startup_s", "wall_s", "samples/s", "timeouts", "errors", "mean score")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, startup, wall, rate, timeouts, errors, mean in table:
        print(f"| {name} | {startup} | {wall:.2f} | {rate:.1f} | {timeouts} | {errors} | {mean:.3f} |")


HANG = "<think>t</think>\\boxed{9^{9^{9^{9^{9}}}}}"  # sympy computes this power for ever


def bench_hangs(args: argparse.Namespace) -> None:
    """One batch with ``args.hangs`` hung samples spread over it: wall time against the timeout."""
    n = max(args.n, args.hangs)
    step = n // args.hangs
    hangs = set(range(0, step * args.hangs, step))
    responses = [HANG if i in hangs else f"\\boxed{{{i}}}" for i in range(n)]
    truths = [str(i) for i in range(n)]
    for workers in args.workers:
        start = time.perf_counter()
        with RewardPool(num_workers=workers, timeout=args.timeout) as pool:
            pool.wait_ready()
            startup = time.perf_counter() - start
            start = time.perf_counter()
            out = pool.score(["math"] * n, responses, truths)
            wall = time.perf_counter() - start
        right = sum(out[i]["score"] == 1.0 for i in range(n) if i not in hangs)
        print(f"RewardPool({workers}): {len(hangs)} hangs in {n} samples, timeout {args.timeout:g}s: "
              f"batch {wall:.2f}s ({wall / args.timeout:.2f} x timeout), start-up {startup:.2f}s, "
              f"timeouts {sum(r['timeout'] for r in out)}, others right {right}/{n - len(hangs)}, "
              f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
