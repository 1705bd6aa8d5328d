"""Peak extra host memory and time of one actor -> rollout weight sync: bucketed vs the old bulk gather.

A Qwen2.5-1.5B-shaped model (hidden 1536, intermediate 8960, vocab 151936, 12 heads / 2 KV heads,
tied embeddings; 28 layers = 1.54 B parameters) with dummy weights is sharded with FSDP2 over
``--world-size`` CPU processes (gloo); each rank syncs into a stand-in engine that holds its own
bf16 copy of every weight and ``copy_``-loads what it is given, as vLLM's ``load_weights`` does.
The actor keeps fp32 master weights; the sync casts to bf16 (as on GPU).

Modes: ``bulk`` is the old path (``gather_full_state_dict``: every rank materialises the full state
dict, then one ``update_weights``); ``bucket=N`` is :func:`workers.weight_sync.sync_rollout_weights`
with N MiB buckets. Peak extra memory is the rise of the process's peak RSS (``VmHWM``, reset through
``/proc/self/clear_refs``) over its RSS before the sync, per rank; the table shows the largest rank.

    python bench/bench_weight_sync.py                          # 7 of 28 layers (fits a small box)
    python bench/bench_weight_sync.py --layers 28              # the full 1.5B shape (~20 GB host RAM for 2 ranks)
    python bench/bench_weight_sync.py --json out.json --buckets 64 512

On GPU the same code path gathers over NCCL into GPU memory; this CPU run measures host memory and
gloo time only (see docs/gpu.md for what transfers and what does not).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Qwen2.5-1.5B (config.json of the released checkpoint)
SHAPE = {"hidden": 1536, "intermediate": 8960, "vocab": 151936, "heads": 12, "kv_heads": 2}


class Layer(nn.Module):
    def __init__(self, h: int, inter: int, heads: int, kv: int) -> None:
        super().__init__()
        hd = h // heads
        self.self_attn = nn.ModuleDict({"q_proj": nn.Linear(h, h), "k_proj": nn.Linear(h, kv * hd),
                                        "v_proj": nn.Linear(h, kv * hd), "o_proj": nn.Linear(h, h, bias=False)})
        self.mlp = nn.ModuleDict({"gate_proj": nn.Linear(h, inter, bias=False),
                                  "up_proj": nn.Linear(h, inter, bias=False),
                                  "down_proj": nn.Linear(inter, h, bias=False)})
        self.input_layernorm = nn.LayerNorm(h, bias=False)
        self.post_attention_layernorm = nn.LayerNorm(h, bias=False)


class Body(nn.Module):
    def __init__(self, layers: int) -> None:
        super().__init__()
        s = SHAPE
        self.embed_tokens = nn.Embedding(s["vocab"], s["hidden"])
        self.layers = nn.ModuleList(Layer(s["hidden"], s["intermediate"], s["heads"], s["kv_heads"])
                                    for _ in range(layers))
        self.norm = nn.LayerNorm(s["hidden"], bias=False)


class Qwen2Shaped(nn.Module):
    """Parameter names and shapes of Qwen2ForCausalLM (tied lm_head: not a separate weight)."""

    def __init__(self, layers: int) -> None:
        super().__init__()
        self.model = Body(layers)


class StandInEngine:
    """Holds a bf16 copy of every weight; loads by ``copy_`` (what vLLM's weight loaders do)."""

    def __init__(self, shapes: dict[str, torch.Size]) -> None:
        self.weights = {k: torch.full(v, 0.5, dtype=torch.bfloat16) for k, v in shapes.items()}

    def _load(self, items) -> None:
        for name, t in items:
            self.weights[name].copy_(t)

    def update_weights(self, state_dict) -> None:
        self._load(state_dict.items())

    def update_weights_bucketed(self, buckets) -> None:
        for bucket in buckets:
            self._load(bucket)


def rss_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def worker(rank: int, world: int, port: int, layers: int, modes: list[str], out_q) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    from torch.distributed.fsdp import fully_shard

    from relift.utils.fsdp import gather_full_state_dict
    from workers.weight_sync import sync_rollout_weights

    with torch.device("meta"):
        model = Qwen2Shaped(layers)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    for layer in model.model.layers:
        fully_shard(layer)
    fully_shard(model)
    model.to_empty(device="cpu")
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.01)                      # touch every page of this rank's shard
    engine = StandInEngine(shapes)
    results = []
    for mode in modes:
        dist.barrier()
        before = rss_kib("VmRSS")
        reset_peak()
        start = time.perf_counter()
        if mode == "bulk":
            state = gather_full_state_dict(model, to_cpu=True, dtype=torch.bfloat16)
            engine.update_weights(state)
            del state
        else:
            sync_rollout_weights(model, engine, bucket_mb=float(mode.split("=")[1]), dtype=torch.bfloat16,
                                 device="cpu")
        seconds = time.perf_counter() - start
        peak = rss_kib("VmHWM")
        results.append({"mode": mode, "rank": rank, "seconds": seconds, "extra_peak_mib": (peak - before) / 1024,
                        "rss_before_mib": before / 1024})
    out_q.put(results)
    dist.barrier()
    dist.destroy_process_group()


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=7, help="decoder layers (the real 1.5B has 28)")
    ap.add_argument("--world-size", type=int, default=2)
    ap.add_argument("--buckets", type=float, nargs="+", default=[64, 256, 512, 1024], help="bucket sizes in MiB")
    ap.add_argument("--no-bulk", action="store_true", help="skip the old bulk path")
    ap.add_argument("--bulk-first", action="store_true", help="measure the bulk path before the buckets")
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args(argv)
    from relift.single_controller.worker import get_free_port

    modes = [f"bucket={b:g}" for b in args.buckets]
    if not args.no_bulk:
        modes = ["bulk", *modes] if args.bulk_first else [*modes, "bulk"]
    with torch.device("meta"):
        n_params = sum(p.numel() for p in Qwen2Shaped(args.layers).parameters())
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    port = get_free_port("127.0.0.1")
    procs = [ctx.Process(target=worker, args=(r, args.world_size, port, args.layers, modes, q))
             for r in range(args.world_size)]
    for p in procs:
        p.start()
    rows = [row for _ in procs for row in q.get()]
    for p in procs:
        p.join()
        if p.exitcode:
            raise SystemExit(f"a rank exited with {p.exitcode}")
    print(f"model: Qwen2.5-1.5B shape with {args.layers} layers = {n_params / 1e9:.3f} B params "
          f"({n_params * 2 / 2**30:.2f} GiB in bf16); world size {args.world_size} (gloo, CPU)")
    print(f"{'mode':<12} {'max extra peak RSS/rank (MiB)':>30} {'time (s, slowest rank)':>24}")
    table = []
    for mode in modes:
        sel = [r for r in rows if r["mode"] == mode]
        row = {"mode": mode, "layers": args.layers, "params": n_params, "world_size": args.world_size,
               "extra_peak_mib": max(r["extra_peak_mib"] for r in sel), "seconds": max(r["seconds"] for r in sel)}
        table.append(row)
        print(f"{mode:<12} {row['extra_peak_mib']:>30.0f} {row['seconds']:>24.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=1))
    return table


if __name__ == "__main__":
    main()
