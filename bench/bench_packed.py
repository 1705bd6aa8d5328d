"""Packed rows against length groups with a shared prompt, one actor micro-batch on CPU (issue 18.3).

Times ``DataParallelActor._forward_micro_batch`` + backward on a tiny random Qwen2 for one GRPO-shaped
micro-batch (``prompts`` x ``samples`` rows, left-padded prompts, right-padded responses of random
length) through the two padding-free paths: the packed row (``workers/packed_forward.py``; on CPU
transformers builds a dense block-diagonal mask for SDPA) and the CPU default (the micro-batch trimmed,
rows grouped by response length, each prompt run once). Runs alternate; the fastest of ``--repeats`` is
printed.

    python bench/bench_packed.py
    python bench/bench_packed.py --hidden 256 --layers 6 --prompts 8 --samples 8 --response 64
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from relift.models.tiny import build_tiny_tokenizer, make_tiny_model  # noqa: E402
from workers.actor import DataParallelActor  # noqa: E402


def _micro_batch(prompts: int, samples: int, prompt: int, response: int, seed: int,
                 min_response: int = 1) -> dict[str, torch.Tensor]:
    """Left-padded prompts (``prompt - 6 .. prompt`` tokens), each repeated ``samples`` times, and
    right-padded responses of ``min_response .. response`` tokens."""
    g = torch.Generator().manual_seed(seed)
    rows = prompts * samples
    p_len = torch.randint(max(1, prompt - 6), prompt + 1, (prompts,), generator=g).repeat_interleave(samples)
    r_len = torch.randint(min_response, response + 1, (rows,), generator=g)
    prompt_ids = torch.randint(3, 250, (prompts, prompt), generator=g).repeat_interleave(samples, 0)
    ids = torch.cat([prompt_ids, torch.randint(3, 250, (rows, response), generator=g)], 1)
    cols = torch.arange(prompt + response)
    mask = torch.cat([cols[None, :prompt] >= (prompt - p_len)[:, None],
                      cols[None, :response] < r_len[:, None]], dim=1).long()
    ids = ids * mask
    return {"input_ids": ids, "attention_mask": mask, "position_ids": (mask.cumsum(-1) - 1).clamp(min=0),
            "responses": ids[:, prompt:]}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--prompt", type=int, default=30, help="prompt width (each prompt 6 tokens shorter at most)")
    p.add_argument("--response", type=int, default=32, help="response cap (lengths uniform in 1..cap)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = make_tiny_model(build_tiny_tokenizer(), hidden_size=args.hidden, num_layers=args.layers, num_heads=4,
                            num_kv_heads=4, intermediate_size=2 * args.hidden, seed=0)
    batch = _micro_batch(args.prompts, args.samples, args.prompt, args.response, seed=0)
    times: dict[str, list[float]] = {"length groups + shared prompt": [], "packed": []}
    for rep in range(args.repeats):
        for name in list(times) if rep % 2 == 0 else list(reversed(times)):
            actor = DataParallelActor(model, None, {})
            actor.pack_sequences = name == "packed"
            actor.share_prompts = not actor.pack_sequences
            t0 = time.perf_counter()
            log_probs, _ = actor._forward_micro_batch(batch, 1.0, False)
            log_probs.sum().backward()
            times[name].append(time.perf_counter() - t0)
            model.zero_grad(set_to_none=True)
    mask = batch["attention_mask"]
    print(f"hidden {args.hidden} x {args.layers} layers, {args.prompts} prompts x {args.samples} samples, "
          f"{int(mask.sum())} real of {mask.numel()} tokens, threads {args.threads}; fastest of {args.repeats}")
    print("| path | s per forward + backward |\n|---|---:|")
    for name, seconds in times.items():
        print(f"| {name} | {min(seconds):.3f} |")


if __name__ == "__main__":
    main()
