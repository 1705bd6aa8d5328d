"""Per-phase timings of one RL worker step on the tiny model (CPU by default).

Phases, as the driver would call them on an ``actor_rollout_ref`` worker group: weight sync
(actor -> rollout, inside the first generate after an update), generate, old log-probs, reference
log-probs, actor update, and ReLIFT's fine-tuning step. Reward scoring is timed separately through a
RewardWorker (process pool). World size 1 runs in this process; ``--world-size 2`` runs two Ray
workers (gloo FSDP2).

    python bench/bench_worker_step.py                       # 1 worker, in-process
    python bench/bench_worker_step.py --world-size 2        # 2 Ray workers
    python bench/bench_worker_step.py --json out.json       # also write the numbers

Prints the median over ``--steps`` measured steps (after one warm-up step) of each phase.
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

from relift.protocol import DataProto  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--world-size", type=int, default=1)
    p.add_argument("--steps", type=int, default=3, help="measured steps (after one warm-up step)")
    p.add_argument("--prompts", type=int, default=8, help="prompts per step")
    p.add_argument("--n", type=int, default=4, help="samples per prompt")
    p.add_argument("--prompt-length", type=int, default=32)
    p.add_argument("--response-length", type=int, default=64)
    p.add_argument("--hidden-size", type=int, default=64)
    p.add_argument("--num-layers", type=int, default=2)
    p.add_argument("--micro-batch", type=int, default=8, help="sequences per forward/backward per worker")
    p.add_argument("--json", type=str, default=None, help="write the results here")
    return p.parse_args(argv)


def build_config(model_path: Path, args: argparse.Namespace):
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(REPO / "trainer" / "config" / "rl_trainer.yaml")
    cfg.pop("hydra", None)
    cfg.pop("defaults", None)
    cfg.data.max_prompt_length = args.prompt_length
    cfg.data.max_response_length = args.response_length
    arr = cfg.actor_rollout_ref
    arr.model.path = str(model_path)
    arr.rollout.n = args.n
    arr.actor.ppo_mini_batch_size = args.prompts
    arr.actor.ppo_micro_batch_size_per_gpu = args.micro_batch
    arr.actor.use_kl_loss = True
    cfg.data.train_batch_size = args.prompts
    cfg.trainer.n_gpus_per_node = args.world_size
    cfg.trainer.device = "cpu"
    return cfg


def reward_spec():
    from relift.spec import RewardSpec

    return RewardSpec(num_workers=1, timeout=10.0, think_format=False, custom_reward_function=None,
                      reward_fn_key="data_source", max_error_fraction=0.5, max_error_steps=3)


def make_prompts(tokenizer, args: argparse.Namespace, step: int) -> DataProto:
    g = torch.Generator().manual_seed(step)
    texts = []
    for i in range(args.prompts):
        a, b = torch.randint(10, 99, (2,), generator=g).tolist()
        texts.append(f"What is {a} + {b}? Answer in \\boxed{{}}." + " pad" * (i % 3))
    enc = tokenizer(texts, return_tensors="pt", padding="max_length", max_length=args.prompt_length, truncation=True)
    pos = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    gts = [str(sum(int(x) for x in t.split("?")[0].split()[2::2])) for t in texts]
    return DataProto.from_dict({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                                "position_ids": pos},
                               {"data_source": ["math"] * len(texts),
                                "reward_model": [{"ground_truth": g_} for g_ in gts],
                                "uid": [f"p{step}_{i}" for i in range(len(texts))]},
                               meta_info={"temperature": 1.0, "global_step": step})


def one_step(actor, reward, tokenizer, args, step: int) -> dict[str, float]:
    t: dict[str, float] = {}
    prompts = make_prompts(tokenizer, args, step)
    start = time.perf_counter()
    gen = actor.generate_sequences(prompts)
    t["generate_call"] = time.perf_counter() - start
    t["weight_sync"] = gen.meta_info["timing"]["weight_sync"]
    t["generate_engine"] = gen.meta_info["timing"]["gen"]
    gen.meta_info.pop("timing")
    start = time.perf_counter()
    scored = reward.compute_score(gen)
    t["reward"] = time.perf_counter() - start
    gen.union(scored.select(batch_keys=["token_level_scores"], non_tensor_batch_keys=["acc"]))
    start = time.perf_counter()
    gen.union(actor.compute_log_prob(gen))
    t["old_log_prob"] = time.perf_counter() - start
    start = time.perf_counter()
    gen.union(actor.compute_ref_log_prob(gen))
    t["ref_log_prob"] = time.perf_counter() - start
    from relift.algorithms.advantages import compute_advantage

    adv, _ = compute_advantage("grpo", gen.batch["token_level_scores"], gen.batch["response_mask"],
                               index=gen.non_tensor_batch["uid"])
    gen.batch["advantages"] = adv
    start = time.perf_counter()
    actor.update_actor(gen)
    t["update_actor"] = time.perf_counter() - start
    sft = gen.select(batch_keys=["input_ids", "attention_mask", "position_ids", "responses", "response_mask"])
    start = time.perf_counter()
    actor.update_actor_sft(sft)
    t["update_sft"] = time.perf_counter() - start
    t["step_total"] = sum(v for k, v in t.items() if k not in ("weight_sync", "generate_engine"))
    t["tokens"] = float(gen.batch["attention_mask"].sum())
    return t


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from relift.models.tiny import build_tiny_model
    from relift.single_controller import InProcessWorkerGroup, RayClassWithInitArgs
    from workers.fsdp_worker import ActorRolloutRefWorker
    from workers.reward_worker import RewardWorker

    tmp = Path(tempfile.mkdtemp(prefix="bench_worker_"))
    model_path = build_tiny_model(tmp / "model", hidden_size=args.hidden_size, num_layers=args.num_layers)
    from trainer.plan import build_policy_worker_spec

    spec = build_policy_worker_spec(build_config(model_path, args), total_steps=args.steps + 1)
    reward_args = (reward_spec(), str(model_path))
    start = time.perf_counter()
    if args.world_size == 1:
        actor = InProcessWorkerGroup(RayClassWithInitArgs(ActorRolloutRefWorker, spec, "actor_rollout_ref"))
        reward = InProcessWorkerGroup(RayClassWithInitArgs(RewardWorker, *reward_args))
    else:
        import ray

        from relift.single_controller import RayResourcePool, RayWorkerGroup

        ray.init(address="local", num_cpus=args.world_size + 1, include_dashboard=False,
                 runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}})
        actor = RayWorkerGroup(RayResourcePool([args.world_size], use_gpu=False),
                               RayClassWithInitArgs(ray.remote(ActorRolloutRefWorker), spec, "actor_rollout_ref"))
        reward = RayWorkerGroup(RayResourcePool([1], use_gpu=False),
                                RayClassWithInitArgs(ray.remote(RewardWorker), *reward_args))
    actor.init_model()
    reward.init_model()
    init_s = time.perf_counter() - start
    from relift.models.loading import load_tokenizer

    tokenizer = load_tokenizer(model_path)
    one_step(actor, reward, tokenizer, args, 0)  # warm-up
    runs = [one_step(actor, reward, tokenizer, args, s + 1) for s in range(args.steps)]
    reward.close_pool()
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    result = {"world_size": args.world_size, "init_s": init_s, "median_s": med,
              "settings": {k: v for k, v in vars(args).items() if k != "json"},
              "torch_threads": torch.get_num_threads(), "device": "cpu"}
    print(f"world size {args.world_size}: {args.prompts} prompts x n={args.n}, prompt {args.prompt_length} + "
          f"response {args.response_length} tokens, tiny Qwen2 h={args.hidden_size} L={args.num_layers}")
    print(f"init (load + shard + engines): {init_s:.2f} s")
    print(f"{'phase':<18}{'median s':>10}")
    for k, v in med.items():
        if k != "tokens":
            print(f"{k:<18}{v:>10.3f}")
    print(f"{'tokens/step':<18}{med['tokens']:>10.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
