"""Forward + backward of one micro-batch on one CPU rank: the plain module against FSDP2-wrapped
(issue 18.1; why ``workers.fsdp_model.needs_fsdp`` leaves a single fp32 rank unwrapped).

At world size 1 FSDP2 has nothing to shard, yet before each decoder layer's forward (and, with
``reshard_after_forward``, again before its backward) it gathers the layer's weights through a
one-rank collective and copies them. The three variants run alternately on the tiny bench job's
model shape (hidden 128, 4 layers); the fastest three of ``--repeats`` means are printed.

    python bench/bench_fsdp_single_rank.py
    python bench/bench_fsdp_single_rank.py --hidden 256 --layers 6 --rows 51 --length 90
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from relift.models.tiny import build_tiny_tokenizer, make_tiny_model  # noqa: E402
from relift.single_controller.worker import get_free_port  # noqa: E402
from relift.utils.fsdp import apply_fsdp2  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--rows", type=int, default=32)
    p.add_argument("--length", type=int, default=40)
    p.add_argument("--repeats", type=int, default=6)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ["MASTER_PORT"] = str(get_free_port("127.0.0.1"))
    dist.init_process_group("gloo", rank=0, world_size=1)
    tok = build_tiny_tokenizer()
    base = make_tiny_model(tok, hidden_size=args.hidden, num_layers=args.layers, num_heads=4, num_kv_heads=4,
                           intermediate_size=2 * args.hidden, seed=0)
    models = {"plain": base}
    for name, reshard in (("FSDP2, reshard after forward (default)", True), ("FSDP2, no reshard", False)):
        wrapped = copy.deepcopy(base)
        models[name] = apply_fsdp2(wrapped, reshard_after_forward=reshard)
    ids = torch.randint(0, len(tok) - 4, (args.rows, args.length), generator=torch.Generator().manual_seed(0))

    def step(model: torch.nn.Module) -> None:
        logits = model(input_ids=ids, use_cache=False).logits
        logits.float().logsumexp(-1).mean().backward()

    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(args.repeats):
        for name, model in models.items():
            step(model)
            start = time.perf_counter()
            for _ in range(5):
                step(model)
            times[name].append((time.perf_counter() - start) / 5 * 1e3)
    print(f"hidden {args.hidden} x {args.layers} layers, {args.rows} rows x {args.length} tokens, "
          f"{args.threads} thread(s): ms per forward + backward (fastest 3 of {args.repeats})")
    for name, values in times.items():
        print(f"  {name:40s} {' '.join(f'{v:.1f}' for v in sorted(values)[:3])}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
