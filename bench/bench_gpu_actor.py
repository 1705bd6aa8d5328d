"""Actor-update throughput and MFU of a Qwen2.5-1.5B-shaped model with random weights on one GPU.

No Ray: the ``ActorRolloutRefWorker`` runs in this process (world size 1, FSDP2 with bf16 compute
and fp32 master weights, AdamW), on a model folder holding only a config and the tiny tokenizer
(``actor_rollout_ref.model.load_format=dummy``: random weights, nothing downloaded). Each measured
step is one ``update_actor`` call (one optimiser step over the whole batch) and one
``compute_log_prob`` call; MFU uses :mod:`relift.metrics.perf` (6N + attention FLOPs per trained
token, 2N + attention per scored token) against the GPU's dense bf16 peak.

    python bench/bench_gpu_actor.py                                   # 1.5B shape, 16 x (512 + 1536)
    python bench/bench_gpu_actor.py --batch 32 --micro-batch 8 --gradient-checkpointing
    python bench/bench_gpu_actor.py --layers 4 --steps 2              # a quick smoke run

Exits with a message (status 0) on a machine without CUDA.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Qwen2.5-1.5B (config.json of the public checkpoint)
QWEN25_15B = dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                  num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768, rope_theta=1_000_000.0,
                  tie_word_embeddings=True, rms_norm_eps=1e-6)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=16, help="sequences per update (one optimiser step)")
    p.add_argument("--micro-batch", type=int, default=4, help="sequences per forward/backward")
    p.add_argument("--prompt-length", type=int, default=512)
    p.add_argument("--response-length", type=int, default=1536)
    p.add_argument("--layers", type=int, default=QWEN25_15B["num_hidden_layers"])
    p.add_argument("--steps", type=int, default=3, help="measured steps after one warm-up")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--attn", default="sdpa", help="attn_implementation (sdpa | flash_attention_2 | eager)")
    p.add_argument("--json", default=None)
    p.add_argument("--cpu-smoke", action="store_true",
                   help="check the script on a CPU with a tiny shape (numbers meaningless, no MFU)")
    return p.parse_args(argv)


def write_model_folder(folder: Path, layers: int, smoke: bool = False) -> Path:
    from transformers import Qwen2Config

    from relift.models.tiny import build_tiny_tokenizer

    shape = dict(QWEN25_15B, num_hidden_layers=layers)
    if smoke:
        shape.update(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
                     vocab_size=263, max_position_embeddings=1024)
    cfg = Qwen2Config(**shape, max_window_layers=layers)
    cfg.architectures = ["Qwen2ForCausalLM"]
    cfg.save_pretrained(folder)
    build_tiny_tokenizer().save_pretrained(folder)
    return folder


def make_batch(args: argparse.Namespace, vocab: int) -> DataProto:  # noqa: F821
    from relift.protocol import DataProto

    g = torch.Generator().manual_seed(0)
    b, p, r = args.batch, args.prompt_length, args.response_length
    input_ids = torch.randint(0, vocab, (b, p + r), generator=g)
    mask = torch.ones(b, p + r, dtype=torch.long)
    # a realistic spread of response lengths: 50%..100% of the budget, left-padded prompts of 75%..100%
    resp_lens = torch.randint(r // 2, r + 1, (b,), generator=g)
    prompt_pad = torch.randint(0, p // 4 + 1, (b,), generator=g)
    for i in range(b):
        mask[i, :prompt_pad[i]] = 0
        mask[i, p + resp_lens[i]:] = 0
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return DataProto.from_dict({"input_ids": input_ids, "attention_mask": mask, "position_ids": pos,
                                "responses": input_ids[:, p:], "response_mask": mask[:, p:],
                                "old_log_probs": torch.zeros(b, r), "advantages": torch.randn(b, r, generator=g)},
                               meta_info={"temperature": 1.0})


def main(argv: list[str] | None = None) -> dict | None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.cpu_smoke:
        args.layers, args.batch, args.micro_batch = 2, 4, 2
        args.prompt_length, args.response_length, args.steps = 16, 32, 1
    elif not torch.cuda.is_available():
        print("bench_gpu_actor: no CUDA device here; run it on a GPU machine (or try --cpu-smoke)")
        return None
    cuda = not args.cpu_smoke

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()
    from omegaconf import OmegaConf

    from relift.metrics.perf import batch_flops, mfu, peak_flops
    from relift.single_controller import InProcessWorkerGroup, RayClassWithInitArgs
    from workers.fsdp_worker import ActorRolloutRefWorker

    folder = write_model_folder(Path(tempfile.mkdtemp(prefix="bench_gpu_actor_")), args.layers, args.cpu_smoke)
    cfg = OmegaConf.load(REPO / "trainer" / "config" / "rl_trainer.yaml")
    cfg.pop("hydra", None)
    cfg.pop("defaults", None)
    arr = cfg.actor_rollout_ref
    arr.model.path = str(folder)
    arr.model.load_format = "dummy"
    arr.model.attn_implementation = args.attn
    cfg.trainer.device = "cuda" if cuda else "cpu"
    arr.model.enable_gradient_checkpointing = args.gradient_checkpointing
    arr.rollout.n = 1
    arr.actor.ppo_mini_batch_size = args.batch
    arr.actor.ppo_micro_batch_size_per_gpu = args.micro_batch
    arr.actor.optim.lr = 1e-6
    cfg.data.max_prompt_length = args.prompt_length
    cfg.data.max_response_length = args.response_length
    cfg.data.train_batch_size = args.batch
    from trainer.plan import build_policy_worker_spec

    spec = build_policy_worker_spec(cfg, total_steps=args.steps + 1)

    start = time.perf_counter()
    group = InProcessWorkerGroup(RayClassWithInitArgs(ActorRolloutRefWorker, spec, "actor"))
    group.init_model()
    init_s = time.perf_counter() - start
    hf_config = group.workers[0].actor_module.config
    data = make_batch(args, hf_config.vocab_size)
    seq_lens = data.batch["attention_mask"].sum(-1).tolist()
    tokens = float(sum(seq_lens))
    train_flops = batch_flops(hf_config, seq_lens, training=True)
    fwd_flops = batch_flops(hf_config, seq_lens, training=False)
    peak = peak_flops(dtype="bf16") if cuda else None

    def timed(fn):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - t0

    group.update_actor(data)  # warm-up
    group.compute_log_prob(data)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    upd = [timed(lambda: group.update_actor(data)) for _ in range(args.steps)]
    lp = [timed(lambda: group.compute_log_prob(data)) for _ in range(args.steps)]
    upd_s, lp_s = statistics.median(upd), statistics.median(lp)
    result = {
        "device": torch.cuda.get_device_name() if cuda else "cpu (smoke)", "layers": args.layers, "batch": args.batch,
        "micro_batch": args.micro_batch, "tokens_per_step": tokens, "init_s": init_s,
        "update_s": upd_s, "update_tokens_per_s": tokens / upd_s,
        "update_mfu": None if peak is None else mfu(train_flops, upd_s, peak),
        "log_prob_s": lp_s, "log_prob_tokens_per_s": tokens / lp_s,
        "log_prob_mfu": None if peak is None else mfu(fwd_flops, lp_s, peak),
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "gradient_checkpointing": args.gradient_checkpointing, "attn": args.attn,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
