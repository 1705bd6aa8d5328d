"""Round-trip cost of the single controller's calls (not a test).

Measures, as medians over repeated runs on a local Ray instance:
  * a no-op ONE_TO_ALL call on a 2-worker group (pure control overhead);
  * DP_COMPUTE_PROTO on a [256, 2048] int64 batch (4 MiB) over 2 workers, each worker returning its
    chunk: split on the driver, two transfers out, two back, concatenation;
  * the same two calls on the in-process backend (world size 1) for reference.

    .venv/bin/python bench/bench_dispatch.py --repeats 30
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from relift.protocol import DataProto
from relift.single_controller import (
    Dispatch,
    InProcessWorkerGroup,
    RayClassWithInitArgs,
    RayResourcePool,
    RayWorkerGroup,
    Worker,
    init_ray,
    register,
)


class BenchWorker(Worker):
    @register(Dispatch.ONE_TO_ALL)
    def noop(self) -> None:
        return None

    @register(Dispatch.DP_COMPUTE_PROTO)
    def echo(self, data: DataProto) -> DataProto:
        return data


def _median_ms(fn, repeats: int, warmup: int) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    q = statistics.quantiles(times, n=10) if len(times) >= 10 else [min(times)] * 9
    return statistics.median(times), q[8]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--cols", type=int, default=2048)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args()

    torch.manual_seed(0)
    data = DataProto.from_dict({"input_ids": torch.randint(0, 32000, (args.rows, args.cols), dtype=torch.int64)})
    mib = data.batch["input_ids"].numel() * 8 / 2**20
    init_ray(address="local", num_cpus=max(2, args.workers), object_store_memory=512 * 2**20)
    pool = RayResourcePool([args.workers], use_gpu=False)
    wg = RayWorkerGroup(pool, RayClassWithInitArgs(BenchWorker), name_prefix="bench")
    out = wg.echo(data)
    assert torch.equal(out.batch["input_ids"], data.batch["input_ids"]), "round trip changed the data"

    results = {}
    results["ray_one_to_all_noop_ms"] = _median_ms(wg.noop, args.repeats, args.warmup)
    results["ray_dp_compute_proto_ms"] = _median_ms(lambda: wg.echo(data), args.repeats, args.warmup)
    local = InProcessWorkerGroup(BenchWorker)
    results["inprocess_one_to_all_noop_ms"] = _median_ms(local.noop, args.repeats, args.warmup)
    results["inprocess_dp_compute_proto_ms"] = _median_ms(lambda: local.echo(data), args.repeats, args.warmup)
    wg.shutdown(release_resources=True)

    print(f"batch [{args.rows}, {args.cols}] int64 = {mib:.1f} MiB, {args.workers} workers, "
          f"{args.repeats} repeats after {args.warmup} warm-up")
    print(f"{'call':38s} {'median ms':>10s} {'p90 ms':>10s}")
    for name, (med, p90) in results.items():
        print(f"{name:38s} {med:10.2f} {p90:10.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": args.rows, "cols": args.cols, "workers": args.workers, "repeats": args.repeats,
                       **{k: {"median_ms": v[0], "p90_ms": v[1]} for k, v in results.items()}}, f, indent=2)


if __name__ == "__main__":
    main()
