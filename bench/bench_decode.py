"""Per-token cost of the HF rollout's decode loop, and what pruning finished rows saves (issue 18.4).

Times ``HFRollout.generate_sequences`` on a tiny random Qwen2 (CPU, fp32). Rows of one batch (1 row:
the per-step Python/dispatch overhead; many rows: the compute), each through the lean static-cache
decode step (the default for Llama-shaped models) and through the transformers forward at every
step; and, with ``--eos-bias``, rows that stop at spread-out lengths (HF loop: the bias is a wrapper
module), with finished rows pruned from the decode batch (the default) or kept until the end
(``PRUNE_FRACTION`` set out of reach). Runs alternate; medians are printed. A second table times
the static step's attention alone (``StaticDecoder._attend``, one query row over the filled cache)
through its two paths: matmul-softmax-matmul with an additive padding bias (what CPU runs) and
``scaled_dot_product_attention`` with the boolean mask (other devices).

    python bench/bench_decode.py
    python bench/bench_decode.py --hidden 256 --layers 6 --rows 256 --length 64 --eos-bias 4
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import workers.rollout.hf as hf  # noqa: E402
from relift.models.tiny import build_tiny_tokenizer, make_tiny_model  # noqa: E402
from relift.protocol import DataProto  # noqa: E402
from workers.rollout.static_decode import StaticDecoder  # noqa: E402


class EosBias(nn.Module):
    """Adds ``bias`` to the EOS logit so sampled rows stop at spread-out lengths."""

    def __init__(self, inner: nn.Module, eos: int, bias: float) -> None:
        super().__init__()
        self.inner, self.eos, self.bias = inner, eos, bias
        self.config, self.generation_config = inner.config, inner.generation_config

    def forward(self, **kwargs):
        out = self.inner(**kwargs)
        out.logits[..., self.eos] += self.bias
        return out


def _prompts(tok, rows: int) -> DataProto:
    enc = tok([f"{i % 97}+{i % 13}=" for i in range(rows)], return_tensors="pt", padding=True)
    mask = enc["attention_mask"]
    return DataProto.from_dict(
        {"input_ids": enc["input_ids"], "attention_mask": mask, "position_ids": (mask.cumsum(-1) - 1).clamp(min=0)}
    )


def _time(engine: hf.HFRollout, prompts: DataProto) -> tuple[float, float]:
    engine.reseed(0)
    t0 = time.perf_counter()
    out = engine.generate_sequences(prompts)
    seconds = time.perf_counter() - t0
    return seconds, float(out.batch["response_mask"].sum(-1).float().mean())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--rows", type=int, default=32)
    p.add_argument("--length", type=int, default=32)
    p.add_argument("--eos-bias", type=float, default=3.0, help="EOS logit bias for the pruning comparison")
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
    cfg = {"response_length": args.length, "do_sample": True, "temperature": 1.0}
    ids = dict(eos_token_id=[tok.eos_token_id], pad_token_id=tok.pad_token_id)
    plain = hf.HFRollout(model, cfg, **ids)  # the lean static-cache decode step (workers/rollout/static_decode.py)
    hf_loop = hf.HFRollout(model, cfg, **ids)
    hf_loop.static_decode = False  # the transformers forward at every step
    biased = hf.HFRollout(EosBias(model, tok.eos_token_id, args.eos_bias), cfg, **ids)  # a wrapper: HF loop
    default_prune = hf.PRUNE_FRACTION
    cases = {
        "1 row, static cache": (plain, _prompts(tok, 1), default_prune),
        "1 row, HF forward per step": (hf_loop, _prompts(tok, 1), default_prune),
        f"{args.rows} rows, static cache": (plain, _prompts(tok, args.rows), default_prune),
        f"{args.rows} rows, HF forward per step": (hf_loop, _prompts(tok, args.rows), default_prune),
        f"{args.rows} rows, EOS bias, pruned": (biased, _prompts(tok, args.rows), default_prune),
        f"{args.rows} rows, EOS bias, kept": (biased, _prompts(tok, args.rows), 10**9),
    }
    times: dict[str, list[float]] = {k: [] for k in cases}
    lengths: dict[str, float] = {}
    for rep in range(args.repeats):
        for name in list(cases) if rep % 2 == 0 else list(reversed(cases)):
            engine, prompts, prune = cases[name]
            hf.PRUNE_FRACTION = prune
            seconds, mean_len = _time(engine, prompts)
            times[name].append(seconds)
            lengths[name] = mean_len
    hf.PRUNE_FRACTION = default_prune
    print(
        f"hidden {args.hidden} x {args.layers} layers, response cap {args.length}, threads {args.threads}; "
        f"median of {args.repeats}"
    )
    print("| case | mean response tokens | s per call | ms per decode step | ms per row-token |")
    print("|---|---:|---:|---:|---:|")
    for name, engine_prompts in cases.items():
        rows = len(engine_prompts[1])
        t = statistics.median(times[name])
        # decode steps run until the longest row stops: the cap unless every row ended early
        print(
            f"| {name} | {lengths[name]:.1f} | {t:.3f} | {1000 * t / args.length:.2f} | "
            f"{1000 * t / max(rows * lengths[name], 1):.3f} |"
        )

    _attention_table(model, args.rows, args.length, args.repeats)


def _attention_table(model: nn.Module, rows: int, length: int, repeats: int) -> None:
    """Per-call time of the static step's attention, matmul + additive bias vs SDPA + boolean mask."""
    prompt = 24
    dec = StaticDecoder(model, prompt + length)
    g = torch.Generator().manual_seed(0)
    dec.kv = torch.randn(len(dec.layers), 2, rows, dec.kv_heads, dec.capacity, dec.head_dim, generator=g)
    dec.mask = torch.rand(rows, 1, 1, dec.capacity, generator=g) > 0.1  # some left padding
    dec.mask[..., prompt:] = True
    bias = torch.zeros(rows, 1, 1, dec.capacity).masked_fill_(~dec.mask, torch.finfo(torch.float32).min)
    dec.bias = bias.expand(rows, dec.kv_heads, 1, dec.capacity).contiguous()  # one row per key/value head
    bias = dec.bias
    dec._bind_views()  # the per-layer views the step reads, as StaticDecoder.start makes them
    q = torch.randn(rows, dec.heads, dec.head_dim, generator=g)
    calls = 50
    print(f"\nattention of one decode step, {rows} rows x {dec.heads} heads x {dec.head_dim}; ms per call, "
          f"median of {repeats} x {calls} calls")
    print("| filled positions | matmul + additive bias | SDPA + boolean mask | ratio |\n|---:|---:|---:|---:|")
    for t in (prompt, prompt + length // 2, prompt + length - 1):
        times: dict[str, list[float]] = {"matmul": [], "sdpa": []}
        for rep in range(repeats + 1):
            for path in ("matmul", "sdpa") if rep % 2 == 0 else ("sdpa", "matmul"):
                dec.bias = bias if path == "matmul" else None
                t0 = time.perf_counter()
                for _ in range(calls):
                    dec._attend(q, 0, t - 1)
                if rep:  # the first round warms up
                    times[path].append((time.perf_counter() - t0) / calls * 1000)
        mm, sd = statistics.median(times["matmul"]), statistics.median(times["sdpa"])
        print(f"| {t} | {mm:.3f} | {sd:.3f} | {mm / sd:.2f}x |")


if __name__ == "__main__":
    main()
