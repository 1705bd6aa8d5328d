"""What prompt sharing saves in the actor's forward + backward (issue 18, ``share_prompt_prefix``).

GRPO batches hold ``n`` samples of each prompt. Times ``DataParallelActor._forward_micro_batch`` +
backward on one micro-batch of ``prompts x n`` rows (a tiny random Qwen2, CPU fp32), with every
distinct prompt run once (its keys/values shared) and with every row run whole. Alternating runs,
medians printed.

    python bench/bench_prompt_sharing.py                       # the tiny bench job's shapes
    python bench/bench_prompt_sharing.py --prompts 32 --n 8 --prompt-len 20 --response-len 20 --layers 3
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


def _batch(prompts: int, n: int, prompt_len: int, response_len: int) -> DataProto:
    g = torch.Generator().manual_seed(0)
    rows = prompts * n
    ids = torch.cat(
        [
            torch.randint(1, 250, (prompts, prompt_len), generator=g).repeat_interleave(n, 0),
            torch.randint(1, 250, (rows, response_len), generator=g),
        ],
        dim=1,
    )
    mask = torch.ones_like(ids)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return DataProto.from_dict(
        {"input_ids": ids, "attention_mask": mask, "position_ids": pos, "responses": ids[:, prompt_len:]},
        meta_info={"temperature": 1.0},
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--n", type=int, default=4)
    p.add_argument("--prompt-len", type=int, default=24)
    p.add_argument("--response-len", type=int, default=32)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = make_tiny_model(
        build_tiny_tokenizer(),
        hidden_size=args.hidden,
        num_layers=args.layers,
        num_heads=4,
        num_kv_heads=4,
        intermediate_size=2 * args.hidden,
        seed=0,
    )
    data = _batch(args.prompts, args.n, args.prompt_len, args.response_len)
    actor = DataParallelActor(model, None, {"ppo_micro_batch_size_per_gpu": len(data)})
    times: dict[bool, list[float]] = {True: [], False: []}
    for rep in range(args.repeats + 1):
        for share in (True, False) if rep % 2 == 0 else (False, True):
            actor.share_prompts = share
            model.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            lp, _ = actor._forward_micro_batch(data.batch, 1.0, False)
            lp.sum().backward()
            if rep:  # the first round warms up
                times[share].append(time.perf_counter() - t0)
    shared, plain = statistics.median(times[True]), statistics.median(times[False])
    print(
        f"hidden {args.hidden} x {args.layers} layers, {args.prompts} prompts x {args.n} samples, prompt "
        f"{args.prompt_len} + response {args.response_len} tokens, {args.threads} thread(s); median of {args.repeats}"
    )
    print("| forward + backward | s |\n|---|---:|")
    print(f"| every row whole | {plain:.4f} |\n| each prompt once, shared | {shared:.4f} |")
    print(f"| shared / whole | {shared / plain:.2f}x |")


if __name__ == "__main__":
    main()
