"""GPU smoke test: the first thing to run on a new cluster node (``sh scripts/gpu_smoke.sh``).

Checks, in order, each printed with its time: CUDA visible; NCCL (a one-rank process group and an
all-reduce); a tiny Qwen2 model written locally (nothing downloaded); one FSDP2 training step on
it; vLLM imports and generates 8 tokens from it; one bucketed weight sync from the FSDP actor into
the engine (:mod:`workers.weight_sync`), after which vLLM's greedy tokens are compared with the
actor's own. Without vLLM the engine steps use the HF engine and say so (``--require-vllm`` makes
that a failure). Exit status: 0 all passed, 1 a check failed, 2 no CUDA device.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch

PREFIX = "[gpu_smoke]"


def say(status: str, name: str, detail: str, seconds: float | None = None) -> None:
    took = f"  ({seconds:.2f} s)" if seconds is not None else ""
    print(f"{PREFIX} {status:<4} {name}: {detail}{took}", flush=True)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def check_cuda() -> bool:
    if not torch.cuda.is_available():
        say("FAIL", "cuda", f"no CUDA device visible to torch {torch.__version__} (built for CUDA "
            f"{torch.version.cuda}; CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}). "
            "Install the CUDA build of torch 2.13.0 and run this on a GPU node; nothing else was checked.")
        return False
    names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    say("OK", "cuda", f"{torch.cuda.device_count()} device(s): {names}; torch {torch.__version__}, "
        f"CUDA {torch.version.cuda}")
    return True


def check_nccl() -> None:
    import torch.distributed as dist

    from relift.single_controller.worker import get_free_port

    version = ".".join(map(str, torch.cuda.nccl.version()))
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(get_free_port("127.0.0.1")))
    for key, value in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0")):
        os.environ.setdefault(key, value)
    torch.cuda.set_device(0)

    def run() -> float:
        dist.init_process_group("cpu:gloo,cuda:nccl", rank=0, world_size=1)
        x = torch.full((1024,), 2.0, device="cuda")
        dist.all_reduce(x)
        return float(x[0])

    value, s = timed(run)
    if value != 2.0:
        raise RuntimeError(f"all_reduce over one rank changed the value to {value}")
    say("OK", "nccl", f"NCCL {version}; one-rank process group + all_reduce", s)


def build_model(out_dir: str) -> str:
    from relift.models.tiny import build_tiny_model

    # head_dim 64: vLLM's attention kernels take head sizes it supports (16 is not among them)
    path, s = timed(lambda: build_tiny_model(out_dir, hidden_size=256, num_layers=2, num_heads=4, num_kv_heads=2,
                                             intermediate_size=512, max_position_embeddings=512, seed=0))
    say("OK", "model", f"tiny Qwen2 written to {path}", s)
    return str(path)


def fsdp_step(path: str) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    from relift.utils.fsdp import apply_fsdp2

    def run() -> tuple[torch.nn.Module, float]:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).cuda()
        apply_fsdp2(model, param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        ids = torch.randint(0, 256, (4, 32), device="cuda", generator=torch.Generator("cuda").manual_seed(0))
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return model, float(loss)

    (model, loss), s = timed(run)
    say("OK", "fsdp", f"one FSDP2 step (bf16 compute, fp32 master weights), loss {loss:.3f}", s)
    return model


def make_engine(path: str, require_vllm: bool) -> tuple[Any, str]:
    try:
        import vllm
    except ImportError as err:
        msg = (f"vLLM is not installed ({err}); pip install 'relift[vllm]' (vllm==0.30.0). "
               "Generation and weight sync below use the HF engine instead.")
        if require_vllm:
            raise RuntimeError(msg) from err
        say("SKIP", "vllm", msg)
        from transformers import AutoModelForCausalLM

        from workers.rollout.hf import HFRollout

        module = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).cuda().eval()
        return HFRollout(module, {"response_length": 8, "prompt_length": 8}, shares_module=False), "hf"
    from workers.rollout.vllm import VLLMRollout

    cfg = {"response_length": 8, "prompt_length": 8, "gpu_memory_utilization": 0.3, "enforce_eager": True,
           "free_cache_engine": True}
    engine, s = timed(lambda: VLLMRollout(path, cfg))
    say("OK", "vllm", f"vllm {vllm.__version__} imported, engine built (sleep mode on)", s)
    return engine, "vllm"


def greedy_tokens(engine: Any, eos: int, pad: int) -> list[int]:
    from relift.protocol import DataProto

    ids = torch.tensor([[pad, pad, 72, 105, 33, 32, 49, 43]])   # "Hi! 1+" left-padded to 8
    mask = (torch.arange(8) >= 2).long().unsqueeze(0)
    batch = DataProto.from_dict({"input_ids": ids, "attention_mask": mask,
                                 "position_ids": (mask.cumsum(-1) - 1).clamp(min=0)},
                                meta_info={"do_sample": False, "eos_token_id": eos, "pad_token_id": pad})
    out = engine.generate_sequences(batch)
    return out.batch["responses"][0].tolist()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu_smoke", description=__doc__.split("\n\n")[0])
    parser.add_argument("--require-vllm", action="store_true", help="fail when vLLM is not installed")
    parser.add_argument("--bucket-mb", type=float, default=512, help="weight-sync bucket size in MiB")
    args = parser.parse_args(argv)

    print(f"{PREFIX} python {sys.version.split()[0]}, torch {torch.__version__}", flush=True)
    if not check_cuda():
        return 2
    step = "nccl"
    total = time.perf_counter()
    try:
        check_nccl()
        with tempfile.TemporaryDirectory(prefix="relift-smoke-") as tmp:
            step = "model"
            path = build_model(tmp)
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(path)
            step = "fsdp"
            actor = fsdp_step(path)
            step = "vllm"
            engine, kind = make_engine(path, args.require_vllm)
            before, s = timed(lambda: greedy_tokens(engine, tok.eos_token_id, tok.pad_token_id))
            say("OK", f"generate[{kind}]", f"8 tokens before sync: {before}", s)
            step = "weight sync"
            from workers.weight_sync import sync_rollout_weights

            stats = sync_rollout_weights(actor, engine, bucket_mb=args.bucket_mb, dtype=torch.bfloat16)
            say("OK", "weight sync", f"{stats.tensors} tensors, {stats.bytes / 2**20:.1f} MiB in {stats.buckets} "
                f"bucket(s) of <= {args.bucket_mb:g} MiB", stats.seconds)
            step = "generate after sync"
            after, s = timed(lambda: greedy_tokens(engine, tok.eos_token_id, tok.pad_token_id))
            say("OK", f"generate[{kind}]", f"8 tokens after sync: {after}"
                f"{' (changed: the trained weights arrived)' if after != before else ' (unchanged)'}", s)
    except Exception as err:  # noqa: BLE001 - report which step failed, with the traceback
        traceback.print_exc()
        say("FAIL", step, f"{type(err).__name__}: {err}")
        return 1
    say("OK", "all", "every check passed", time.perf_counter() - total)
    return 0


if __name__ == "__main__":
    sys.exit(main())
