"""CPU speed-ups tried in rounds 6, 7 and 11 of issue 18; kept so the decisions can be re-checked.

``--part forward``: the actor's forward + backward on one GRPO micro-batch (each distinct prompt run
once, its keys/values shared by its samples, ``workers.prompt_sharing.shared_prompt_logits``) through
transformers' Qwen2 forward (``model.lean_forward=false``) and through the lean passes
(``workers/lean_forward.py``, shipped in round 11 and on by default), against round 6's hand-written
Llama-shaped forward (fused RMSNorm, rotary embedding as roll + multiply-add, one SDPA call with an
additive mask per layer, NOT shipped) and, with ``--compile``, that forward under
``torch.compile(dynamic=True)``, its layer stack alone and the whole call (the first call, which
compiles, is timed and printed). The shipped passes split the rows by response width where that saves
padding (at the small shapes); round 6's forward runs one pass over all of them: ``--full-width`` gives
every row the full response, so that all variants do the same work.
``--part decode``: the shipped static-cache decode step (``workers/rollout/static_decode.py``) against
one with the q/k/v and gate/up projections fused into one matmul each (weights concatenated once per
generation call) and, with ``--compile`` (round 7), a step with static shapes under
``torch.compile(dynamic=False, fullgraph=True)``. Runs alternate; medians are printed, with how far each
variant's logits and gradients (or sampled tokens) are from the first variant's.

    python bench/bench_cpu_fusions.py --part forward                        # the tiny bench job's shapes
    python bench/bench_cpu_fusions.py --part forward --hidden 256 --layers 6 --n 8 --response-len 64
    python bench/bench_cpu_fusions.py --part forward --hidden 256 --layers 6 --n 8 --response-len 64 --full-width
    python bench/bench_cpu_fusions.py --part forward --compile              # adds up to ~30 s of compiling
    python bench/bench_cpu_fusions.py --part decode --compile               # adds 3-20 s of compiling
    python bench/bench_cpu_fusions.py --part decode --hidden 256 --layers 6 --rows 256 --response-len 64
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_decode import _prompts  # noqa: E402  (this folder is on sys.path when a bench script runs)
from bench_packed import _micro_batch  # noqa: E402

import workers.rollout.hf as hf  # noqa: E402
import workers.rollout.static_decode as sd  # noqa: E402
from relift.models.tiny import build_tiny_tokenizer, make_tiny_model  # noqa: E402
from workers.prompt_sharing import _distinct, shared_prompt_logits  # noqa: E402


def _rms_of(x: torch.Tensor, norm: torch.nn.Module) -> torch.Tensor:
    return sd._rms(x, norm.weight, norm.variance_epsilon)


class LeanForward:
    """Response logits of a Llama-shaped model with the prompt run once per distinct prompt."""

    def __init__(self, model: torch.nn.Module, compile_layers: bool = False) -> None:
        self.m = model
        if compile_layers:  # the layer stack only: the distinct-prompt search has a data-dependent shape
            self._layers = torch.compile(self._layers, dynamic=True)
        cfg = model.config
        self.heads, self.kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim = cfg.hidden_size // self.heads
        with torch.no_grad():
            cos, sin = model.model.rotary_emb(torch.zeros(1), torch.arange(cfg.max_position_embeddings)[None])
        self.cos, self.signed_sin = cos[0], sd._signed_sin(sin[0])

    def _layers(self, x: torch.Tensor, positions: torch.Tensor, bias: torch.Tensor, past: list | None):
        b, t, _ = x.shape
        cos, sin = self.cos[positions].unsqueeze(1), self.signed_sin[positions].unsqueeze(1)
        keys_values = []
        for i, layer in enumerate(self.m.model.layers):
            a = layer.self_attn
            h = _rms_of(x, layer.input_layernorm)
            q = F.linear(h, a.q_proj.weight, a.q_proj.bias).view(b, t, self.heads, self.head_dim).transpose(1, 2)
            k = F.linear(h, a.k_proj.weight, a.k_proj.bias).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
            v = F.linear(h, a.v_proj.weight, a.v_proj.bias).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
            q, k = sd._rotate(q, cos, sin), sd._rotate(k, cos, sin)
            keys_values.append((k, v))
            if past is not None:
                k, v = torch.cat([past[i][0], k], 2), torch.cat([past[i][1], v], 2)
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=a.scaling,
                                               enable_gqa=self.kv_heads != self.heads)
            x = x + F.linear(o.transpose(1, 2).reshape(b, t, -1), a.o_proj.weight, a.o_proj.bias)
            h = _rms_of(x, layer.post_attention_layernorm)
            x = x + layer.mlp.down_proj(F.silu(layer.mlp.gate_proj(h)) * layer.mlp.up_proj(h))
        return x, keys_values

    def __call__(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, prompt_len: int,
                 response_len: int) -> torch.Tensor:
        rows, low = ids.shape[0], torch.finfo(torch.float32).min
        count, which = _distinct(ids[:, :prompt_len], mask[:, :prompt_len])
        first = torch.full((count,), rows).scatter_reduce(0, which, torch.arange(rows), reduce="amin")
        prompt_mask = mask[first, :prompt_len].bool()
        causal = torch.ones(prompt_len, prompt_len, dtype=torch.bool).tril()
        bias = torch.zeros(count, 1, prompt_len, prompt_len).masked_fill_(~(causal & prompt_mask[:, None, None]), low)
        x, kv = self._layers(self.m.model.embed_tokens(ids[first, :prompt_len]), positions[first, :prompt_len],
                             bias, None)
        first_token = self.m.lm_head(_rms_of(x[:, -1:], self.m.model.norm)).index_select(0, which)
        past = [(k.index_select(0, which), v.index_select(0, which)) for k, v in kv]
        full = mask.bool()
        seen = torch.ones(response_len, response_len, dtype=torch.bool).tril() & full[:, None, prompt_len:]
        allowed = torch.cat([full[:, None, :prompt_len].expand(rows, response_len, prompt_len), seen], -1)
        bias = torch.zeros(rows, 1, response_len, prompt_len + response_len).masked_fill_(~allowed[:, None], low)
        y, _ = self._layers(self.m.model.embed_tokens(ids[:, prompt_len:]), positions[:, prompt_len:], bias, past)
        return torch.cat([first_token, self.m.lm_head(_rms_of(y[:, : response_len - 1], self.m.model.norm))], 1)


def _median_ms(fns: dict[str, Callable[[], object]], repeats: int, calls: int) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in fns}
    for rep in range(repeats):
        for name in list(fns) if rep % 2 == 0 else list(reversed(fns)):
            fns[name]()
            t0 = time.perf_counter()
            for _ in range(calls):
                fns[name]()
            times[name].append((time.perf_counter() - t0) / calls * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def _print_table(ms: dict[str, float], base: str) -> None:
    """Milliseconds per call of each variant and its ratio to ``base``'s (the first variant)."""
    print(f"| variant | ms per call | vs {base} |\n|---|---:|---:|")
    for name, value in ms.items():
        print(f"| {name} | {value:.1f} | {value / ms[base]:.2f}x |")


BASELINE = "transformers forward (lean_forward=false)"


def bench_forward(model: torch.nn.Module, args: argparse.Namespace) -> None:
    # responses of 2/3 to all of the cap (the bench job's are near the cap), or all of it (--full-width)
    batch = _micro_batch(args.prompts, args.n, args.prompt_len, args.response_len, seed=0,
                         min_response=args.response_len if args.full_width else args.response_len * 2 // 3)
    ids, mask, positions = batch["input_ids"], batch["attention_mask"], batch["position_ids"]
    p, r = args.prompt_len, args.response_len
    lean = LeanForward(model)
    variants: dict[str, Callable[[], torch.Tensor]] = {
        BASELINE: lambda: shared_prompt_logits(model, ids, mask, positions, p, r),
        "lean passes (lean_forward, the default)": lambda: shared_prompt_logits(model, ids, mask, positions, p, r,
                                                                                lean=True),
        "round 6's hand-written forward": lambda: lean(ids, mask, positions, p, r),
    }
    if args.compile:
        compiled = LeanForward(model, compile_layers=True)
        variants["hand-written, layers under torch.compile"] = lambda: compiled(ids, mask, positions, p, r)
        # the whole forward of this one batch as one compiled function (its inputs closed over)
        variants["hand-written, whole call under torch.compile"] = torch.compile(
            lambda: lean(ids, mask, positions, p, r), dynamic=True)
    real = mask[:, p:].bool()
    targets = ids[:, p:].unsqueeze(-1)

    def step(logits_fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        logits = logits_fn()
        (torch.log_softmax(logits, -1).gather(-1, targets).squeeze(-1) * real).sum().backward()
        return logits.detach(), [q.grad.clone() for q in model.parameters()]

    shipped_logits, shipped_grads = step(variants[BASELINE])
    for name, fn in variants.items():
        t0 = time.perf_counter()
        logits, grads = step(fn)
        first_s = time.perf_counter() - t0
        grad_diff = max(float((a - b).abs().max()) for a, b in zip(grads, shipped_grads, strict=True))
        print(f"{name}: first call {first_s:.1f} s; vs the first: logits max diff "
              f"{float((logits - shipped_logits)[real].abs().max()):.1e}, gradients {grad_diff:.1e}")
    ms = _median_ms({k: (lambda f=f: step(f)) for k, f in variants.items()}, args.repeats, args.calls)
    print(f"\nforward + backward, {args.prompts} prompts x {args.n} samples, prompt {p} / response {r} tokens, "
          f"hidden {args.hidden} x {args.layers} layers, {args.threads} threads; median of {args.repeats}")
    _print_table(ms, BASELINE)


class FusedDecoder(sd.StaticDecoder):
    """The shipped decode step with q/k/v and gate/up as one matmul each (CPU path, no bias on gate/up)."""

    def start(self, prefill: Any, prompt_mask: torch.Tensor, repeats: int = 1) -> None:
        super().start(prefill, prompt_mask, repeats)
        self.fused = []
        for lay in self.layers:
            qkv_b = torch.cat([lay.q[1], lay.k[1], lay.v[1]]) if lay.q[1] is not None else None
            self.fused.append((torch.cat([lay.q[0], lay.k[0], lay.v[0]], dim=1).contiguous(), qkv_b,
                               torch.cat([lay.gate[0], lay.up[0]], dim=1).contiguous()))

    @torch.no_grad()
    def step(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        t, rows = self.length, tokens.shape[0]
        x = self.module.model.embed_tokens(tokens)
        cos, sin = self._rope_for(x, positions)
        self.bias[:, :, 0, t] = 0
        hq, hk = self.heads * self.head_dim, self.kv_heads * self.head_dim
        inter = self.layers[0].gate[0].shape[1]
        for i, (lay, (qkv_w, qkv_b, gate_up)) in enumerate(zip(self.layers, self.fused, strict=True)):
            h = sd._rms(x, lay.ln1, self.eps)
            qkv = torch.addmm(qkv_b, h, qkv_w) if qkv_b is not None else h @ qkv_w
            qk = sd._rotate(qkv[:, : hq + hk].view(rows, self.heads + self.kv_heads, self.head_dim), cos, sin)
            self.kv[i, 0, :, :, t] = qk[:, self.heads :]
            self.kv[i, 1, :, :, t] = qkv[:, hq + hk :].view(rows, self.kv_heads, self.head_dim)
            x = sd._add_linear(x, self._attend(qk[:, : self.heads], i, t), lay.o)
            g = sd._rms(x, lay.ln2, self.eps) @ gate_up
            x = sd._add_linear(x, F.silu(g[:, :inter]).mul_(g[:, inter:]), lay.down)
        self.length = t + 1
        return sd._linear(sd._rms(x, self.final_norm, self.final_eps), self.lm_head)


class CompiledDecoder(sd.StaticDecoder):
    """The decode step with static shapes under ``torch.compile(dynamic=False, fullgraph=True)``.

    Attention reads the whole cache (unfilled positions masked by the additive bias) and the new
    token's own key/value beside it, so no shape depends on the step; the new keys/values are
    written into the cache after the compiled call, in eager mode (written inside the graph, the
    compiled step ran 5x slower than eager in a scratch test, probably by copying the cache every step).
    One compile per row count (pruning finished rows changes it) and cache capacity; the unfilled cache
    is zeroed (the shipped step never reads it)."""

    def start(self, prefill: Any, prompt_mask: torch.Tensor, repeats: int = 1) -> None:
        super().start(prefill, prompt_mask, repeats)
        self.kv[..., self.length:, :] = 0  # read under a zero weight: must hold no NaN
        if not hasattr(self, "_compiled"):
            self._compiled = torch.compile(self._layers_static, dynamic=False, fullgraph=True)

    def _layers_static(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, kv: torch.Tensor,
                       bias: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        rows, heads, d, cap = x.shape[0], self.heads, self.head_dim, kv.shape[-2]
        flat_bias = bias.reshape(rows * heads, 1, cap)
        new = []
        for i, lay in enumerate(self.layers):
            h = sd._rms(x, lay.ln1, self.eps)
            q = sd._rotate(sd._linear(h, lay.q).view(rows, heads, d), cos, sin).reshape(-1, 1, d)
            k = sd._rotate(sd._linear(h, lay.k).view(rows, heads, d), cos, sin)
            v = sd._linear(h, lay.v).view(rows, heads, d)
            new += [k, v]
            keys, values = kv[i, 0].reshape(-1, cap, d), kv[i, 1].reshape(-1, cap, d)
            scores = torch.cat([torch.baddbmm(flat_bias, q, keys.transpose(1, 2), alpha=self.scaling),
                                (q * k.reshape(-1, 1, d)).sum(-1, keepdim=True) * self.scaling], -1)
            probs = torch.softmax(scores, -1)
            att = torch.baddbmm(probs[..., cap:] * v.reshape(-1, 1, d), probs[..., :cap], values)
            x = sd._add_linear(x, att.view(rows, -1), lay.o)
            h = sd._rms(x, lay.ln2, self.eps)
            x = sd._add_linear(x, F.silu(sd._linear(h, lay.gate)) * sd._linear(h, lay.up), lay.down)
        return sd._linear(sd._rms(x, self.final_norm, self.final_eps), self.lm_head), new

    @torch.no_grad()
    def step(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        assert not self.gqa and self.bias is not None, "the compiled variant covers the bench's CPU shapes only"
        t = self.length
        x = self.module.model.embed_tokens(tokens)
        cos, sin = self._rope_for(x, positions)
        logits, new = self._compiled(x, cos, sin, self.kv, self.bias)
        for i in range(len(self.layers)):
            self.kv[i, 0, :, :, t], self.kv[i, 1, :, :, t] = new[2 * i], new[2 * i + 1]
        self.bias[:, :, 0, t] = 0
        self.length = t + 1
        return logits


def bench_decode(model: torch.nn.Module, tok: Any, args: argparse.Namespace) -> None:
    engine = hf.HFRollout(model, {"response_length": args.response_len, "do_sample": True, "temperature": 1.0},
                          eos_token_id=[tok.eos_token_id], pad_token_id=tok.pad_token_id)
    prompts = _prompts(tok, args.rows)
    shipped = hf.StaticDecoder
    tokens = {}

    def generate(cls: type) -> None:
        hf.StaticDecoder = cls
        engine.reseed(0)
        tokens[cls.__name__] = engine.generate_sequences(prompts).batch["responses"]

    variants = {"static decode step (shipped)": shipped, "q/k/v and gate/up fused": FusedDecoder}
    if args.compile:
        variants["static shapes under torch.compile"] = CompiledDecoder
    try:
        for name, cls in variants.items():  # the first call of each (the compiled one compiles)
            t0 = time.perf_counter()
            generate(cls)
            print(f"{name}: first call {time.perf_counter() - t0:.1f} s; same tokens as shipped: "
                  f"{torch.equal(tokens[cls.__name__], tokens['StaticDecoder'])}")
        ms = _median_ms({name: (lambda c=cls: generate(c)) for name, cls in variants.items()}, args.repeats, 1)
    finally:
        hf.StaticDecoder = shipped
    print(f"\none generation call, {args.rows} rows x {args.response_len} tokens, hidden {args.hidden} x "
          f"{args.layers} layers, {args.threads} threads; median of {args.repeats}")
    _print_table(ms, "static decode step (shipped)")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", choices=["forward", "decode"], default="forward")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--prompts", type=int, default=8, help="forward: distinct prompts in the micro-batch")
    p.add_argument("--n", type=int, default=4, help="forward: samples per prompt")
    p.add_argument("--prompt-len", type=int, default=30, help="forward: prompt width (prompts up to 6 shorter)")
    p.add_argument("--response-len", type=int, default=32, help="response cap (forward: lengths 2/3..1 of it)")
    p.add_argument("--rows", type=int, default=32, help="decode: rows of the generation call")
    p.add_argument("--full-width", action="store_true", help="forward: every response as wide as the cap")
    p.add_argument("--compile", action="store_true", help="also time the torch.compile'd forward / decode step")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--calls", type=int, default=10, help="forward: calls per timed run")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    tok = build_tiny_tokenizer()
    model = make_tiny_model(tok, hidden_size=args.hidden, num_layers=args.layers, num_heads=4, num_kv_heads=4,
                            intermediate_size=2 * args.hidden, max_position_embeddings=256, seed=0)
    if args.part == "forward":
        model.train()
        bench_forward(model, args)
    else:
        model.eval()
        bench_decode(model, tok, args)


if __name__ == "__main__":
    main()
