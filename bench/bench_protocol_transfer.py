"""Cost of moving a DataProto through Ray's object store (not a test).

A [1024, 4096] int64 DataProto (32 MiB) is ``ray.put`` by the driver and ``ray.get`` by an actor
in another process; medians over repeated runs of:
  * put: the driver's ``ray.put`` (serialise + copy into shared memory);
  * get in actor: the actor's ``ray.get`` of that ref, timed inside the actor (deserialise; the
    tensors come out of shared memory and are copied once to become writeable);
  * end to end: put + actor get + a small reply, timed on the driver;
and the same for a bare numpy array of that size as the floor Ray itself sets.

    .venv/bin/python bench/bench_protocol_transfer.py --repeats 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import ray
import torch

from relift.protocol import DataProto
from relift.single_controller import init_ray


@ray.remote(num_cpus=1)
class Receiver:
    def fetch(self, boxed: list) -> tuple[float, int]:
        t0 = time.perf_counter()
        value = ray.get(boxed[0])  # the ref is boxed in a list so Ray does not resolve it before we time it
        dt = time.perf_counter() - t0
        size = value.batch["input_ids"].numel() if isinstance(value, DataProto) else value.size
        return dt * 1e3, int(size)


def _once(value, receiver) -> tuple[float, float, float]:
    t0 = time.perf_counter()
    ref = ray.put(value)
    t1 = time.perf_counter()
    get_ms, _ = ray.get(receiver.fetch.remote([ref]))
    t2 = time.perf_counter()
    del ref
    return (t1 - t0) * 1e3, get_ms, (t2 - t0) * 1e3


def _run(payloads: dict, receiver, repeats: int, warmup: int) -> dict[str, dict[str, float]]:
    """Alternate the payloads run by run, after warming up all of them, so that neither pays alone
    for the object store's first touches of fresh shared memory."""
    samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name in payloads}
    for i in range(warmup + repeats):
        for name, value in payloads.items():
            r = _once(value, receiver)
            if i >= warmup:
                samples[name].append(r)
    return {name: {"put_ms": statistics.median(s[0] for s in rows),
                   "get_in_actor_ms": statistics.median(s[1] for s in rows),
                   "end_to_end_ms": statistics.median(s[2] for s in rows)} for name, rows in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rows", type=int, default=1024)
    parser.add_argument("--cols", type=int, default=4096)
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args()

    torch.manual_seed(0)
    ids = torch.randint(0, 32000, (args.rows, args.cols), dtype=torch.int64)
    data = DataProto.from_dict({"input_ids": ids}, meta_info={"temperature": 1.0})
    mib = ids.numel() * 8 / 2**20
    init_ray(address="local", num_cpus=2, object_store_memory=768 * 2**20)
    receiver = Receiver.remote()
    _, size = ray.get(receiver.fetch.remote([ray.put(data)]))
    assert size == ids.numel()
    results = _run({"DataProto": data, "numpy array (floor)": ids.numpy()}, receiver, args.repeats, args.warmup)
    print(f"[{args.rows}, {args.cols}] int64 = {mib:.0f} MiB, medians of {args.repeats} runs "
          f"after {args.warmup} warm-up")
    print(f"{'payload':22s} {'put ms':>9s} {'get in actor ms':>16s} {'end to end ms':>14s} {'GiB/s e2e':>10s}")
    for name, r in results.items():
        print(f"{name:22s} {r['put_ms']:9.2f} {r['get_in_actor_ms']:16.2f} {r['end_to_end_ms']:14.2f} "
              f"{mib / 1024 / (r['end_to_end_ms'] / 1e3):10.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": args.rows, "cols": args.cols, "mib": mib, **results}, f, indent=2)
    ray.shutdown()


if __name__ == "__main__":
    main()
