"""Padding in the actor's passes: consecutive vs length-sorted micro-batches (issue 18.3).

Every micro-batch is already trimmed to its own longest prompt and response
(``workers/actor.py``); what is left is the padding of rows shorter than the longest in their
micro-batch. Sorting rows by length before cutting fixed-size micro-batches removes most of it.
This times the log-prob pass (no grad) and forward + backward of the update's log-probs on one
batch, the two groupings alternating in one process, and prints the padded-token fraction of each.

    python bench/bench_remove_padding.py                        # small-job model, 256 rows, micro 16
    python bench/bench_remove_padding.py --micro 4 --hidden 128 --layers 4 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from relift.models.tiny import build_tiny_tokenizer, make_tiny_model  # noqa: E402
from relift.protocol import DataProto  # noqa: E402
from workers.actor import DataParallelActor  # noqa: E402
from workers.actor_batches import micro_batch_groups  # noqa: E402


def make_batch(rows: int, prompt_max: int, resp_max: int, seed: int) -> DataProto:
    """Left-padded prompts (prompt_max-4..prompt_max tokens) + right-padded responses of 1..resp_max."""
    g = torch.Generator().manual_seed(seed)
    p_len = torch.randint(prompt_max - 4, prompt_max + 1, (rows,), generator=g)
    r_len = torch.randint(1, resp_max + 1, (rows,), generator=g)
    ids = torch.randint(0, 255, (rows, prompt_max + resp_max), generator=g)
    cols = torch.arange(prompt_max + resp_max)
    prompt_ok = cols[None, :prompt_max] >= (prompt_max - p_len)[:, None]
    resp_ok = cols[None, :resp_max] < r_len[:, None]
    mask = torch.cat([prompt_ok, resp_ok], dim=1).long()
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return DataProto.from_dict(
        {
            "input_ids": ids * mask,
            "attention_mask": mask,
            "position_ids": pos,
            "responses": (ids * mask)[:, prompt_max:],
        },
        meta_info={"temperature": 1.0},
    )


def padded_fraction(batch: DataProto, groups: list[list[int]], prompt_max: int) -> float:
    mask = batch.batch["attention_mask"]
    total = real = 0
    for g in groups:
        m = mask[g]
        p_w = int(m[:, :prompt_max].sum(-1).max())
        r_w = int(m[:, prompt_max:].sum(-1).max())
        total += len(g) * (p_w + r_w)
        real += int(m.sum())
    return 1 - real / total


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--rows", type=int, default=256)
    p.add_argument("--micro", type=int, default=16)
    p.add_argument("--prompt-max", type=int, default=16)
    p.add_argument("--resp-max", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    tok = build_tiny_tokenizer()
    model = make_tiny_model(
        tok,
        hidden_size=args.hidden,
        num_layers=args.layers,
        num_heads=4,
        num_kv_heads=4,
        intermediate_size=2 * args.hidden,
        seed=0,
    )
    batch = make_batch(args.rows, args.prompt_max, args.resp_max, seed=0)
    actor = DataParallelActor(model, None, {"ppo_micro_batch_size_per_gpu": args.micro})
    results: dict[str, dict[str, list[float]]] = {}
    for rep in range(args.repeats):
        for sort in (False, True) if rep % 2 == 0 else (True, False):
            name = "sorted" if sort else "consecutive"
            groups = micro_batch_groups(batch, False, args.micro, None, sort_by_length=sort)
            parts = [batch[g] for g in groups]
            t0 = time.perf_counter()
            model.eval()
            with torch.no_grad():
                for part in parts:
                    actor._forward_micro_batch(part.batch, 1.0, False)
            t1 = time.perf_counter()
            model.train()
            for part in parts:
                lp, _ = actor._forward_micro_batch(part.batch, 1.0, False)
                lp.sum().backward()
            t2 = time.perf_counter()
            model.zero_grad(set_to_none=True)
            cell = results.setdefault(name, {"log_prob": [], "fwd_bwd": [], "pad": []})
            cell["log_prob"].append(t1 - t0)
            cell["fwd_bwd"].append(t2 - t1)
            cell["pad"].append(padded_fraction(batch, groups, args.prompt_max))
    print(
        f"hidden {args.hidden} x {args.layers} layers, {args.rows} rows, micro {args.micro}, threads "
        f"{args.threads}, prompt <= {args.prompt_max}, response 1..{args.resp_max}; medians of {args.repeats}"
    )
    print("| grouping | padded tokens | log-prob pass s | forward+backward s |")
    print("|---|---:|---:|---:|")
    for name, cell in results.items():
        print(
            f"| {name} | {cell['pad'][0]:.1%} | {statistics.median(cell['log_prob']):.3f} | "
            f"{statistics.median(cell['fwd_bwd']):.3f} |"
        )


if __name__ == "__main__":
    main()
