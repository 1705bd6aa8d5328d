"""ActorRolloutRefWorker on a tiny Qwen2: roles, weight sync, LR schedule, checkpoints, export, and
world size 1 (in-process) vs 2 (Ray, gloo FSDP2) giving the same numbers."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from relift.protocol import DataProto
from relift.single_controller import InProcessWorkerGroup, RayClassWithInitArgs
from relift.utils import checkpoint as ck
from tests.proc_utils import sigkill_after
from workers.fsdp_worker import ActorRolloutRefWorker

REPO = Path(__file__).resolve().parents[1]
B, P, R = 4, 6, 8


def make_spec(model_path: str | Path, world: int = 1, device: str = "cpu", **actor_overrides):
    """The policy workers' spec for ``world`` workers, through the same plan checks as a run."""
    from trainer.plan import build_policy_worker_spec

    cfg = make_config(model_path, **actor_overrides)
    cfg.trainer.n_gpus_per_node = world
    cfg.trainer.device = device
    return build_policy_worker_spec(cfg, total_steps=10)


def make_config(model_path: str | Path, **actor_overrides):
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(REPO / "trainer" / "config" / "rl_trainer.yaml")
    cfg.pop("hydra", None)
    cfg.pop("defaults", None)
    cfg.trainer.device = "cpu"    # the same numbers on a GPU machine (the gpu tests opt in)
    cfg.data.max_prompt_length = P
    cfg.data.max_response_length = R
    arr = cfg.actor_rollout_ref
    arr.model.path = str(model_path)
    arr.rollout.n = 2
    arr.rollout.calculate_log_probs = True
    arr.actor.ppo_mini_batch_size = 2           # prompts: x n=2 -> 4 sequences per optimiser step
    arr.actor.ppo_micro_batch_size_per_gpu = 2
    arr.actor.optim.lr = 1e-3
    arr.actor.optim.lr_scheduler_type = "cosine"
    arr.actor.optim.lr_warmup_steps = 1
    cfg.relift.lr = 5e-4
    cfg.relift.sft_micro_batch_size_per_gpu = 2
    for key, value in actor_overrides.items():
        OmegaConf.update(cfg, f"actor_rollout_ref.actor.{key}", value)
    return cfg


def make_batch(seed: int = 0) -> DataProto:
    """Prompt + response rows; rows differ in prompt padding and response length (uneven tokens)."""
    g = torch.Generator().manual_seed(seed)
    prompts = torch.randint(0, 256, (B, P), generator=g)
    resp = torch.randint(0, 256, (B, R), generator=g)
    mask = torch.ones(B, P + R, dtype=torch.long)
    mask[0, :3] = 0          # left padding in the prompt
    mask[1, P + 3:] = 0      # a short response
    mask[3, P + 6:] = 0
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return DataProto.from_dict({"input_ids": torch.cat([prompts, resp], 1), "attention_mask": mask,
                                "position_ids": pos, "responses": resp, "response_mask": mask[:, P:]},
                               meta_info={"temperature": 1.0})


def with_advantages(data: DataProto, old: DataProto, seed: int = 1) -> DataProto:
    g = torch.Generator().manual_seed(seed)
    out = DataProto.from_dict(dict(data.batch.items()), meta_info=dict(data.meta_info))
    out.batch["old_log_probs"] = old.batch["old_log_probs"]
    out.batch["advantages"] = torch.randn(B, R, generator=g) * data.batch["response_mask"]
    return out


def prompt_batch(tokenizer) -> DataProto:
    enc = tokenizer(["1+1=", "say hi"], return_tensors="pt", padding=True)
    pos = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    return DataProto.from_dict({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                                "position_ids": pos}, {"uid": ["a", "b"]}, meta_info={"temperature": 1.0})


def full_params(worker) -> dict[str, torch.Tensor]:
    from relift.utils.fsdp import gather_full_state_dict

    return gather_full_state_dict(worker.actor_module)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from relift.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def local_group(tiny_model):
    """World size 1 in this process (torch.distributed is torn down again afterwards)."""
    import torch.distributed as dist

    threads = torch.get_num_threads()
    torch.manual_seed(0)
    group = InProcessWorkerGroup(RayClassWithInitArgs(ActorRolloutRefWorker, make_spec(tiny_model),
                                                      "actor_rollout_ref"))
    group.init_model()
    yield group
    group.shutdown()
    if dist.is_initialized():
        dist.destroy_process_group()
    torch.set_num_threads(threads)  # the CPU worker picked its own thread count for this process


# ---------------------------------------------------------------------------- config checks (no model)
def test_unknown_role_is_rejected(tiny_model):
    with pytest.raises(ValueError, match="unknown role 'critic'"):
        ActorRolloutRefWorker(make_spec(tiny_model), "critic")


def test_mini_batch_is_normalised_from_prompts_to_sequences_per_worker(tiny_model):
    from workers.fsdp_worker import actor_config

    # 4 prompts x n=2 = 8 sequences per optimiser step, 4 per worker
    assert actor_config(make_spec(tiny_model, world=2, ppo_mini_batch_size=4)).ppo_mini_batch_size == 4


def test_mini_batch_that_does_not_split_names_the_keys(tiny_model):
    from trainer.plan import PlanError

    with pytest.raises(PlanError) as err:
        make_spec(tiny_model, world=4, ppo_mini_batch_size=3)
    msg = str(err.value)
    assert ("actor_rollout_ref.actor.ppo_mini_batch_size (3) x actor_rollout_ref.rollout.n (2) = 6 sequences per "
            "mini-batch must divide by world size 4") in msg and "6 / 4 = 1.5" in msg


def test_a_spec_planned_for_another_world_size_is_refused(tiny_model):
    from relift.single_controller import WorkerGroupError

    with pytest.raises(WorkerGroupError, match="planned for world size 1"):
        InProcessWorkerGroup(RayClassWithInitArgs(ActorRolloutRefWorker, make_spec(tiny_model), "actor"),
                             world_size=2).init_model()


def test_offline_spec_reaches_the_actor(tiny_model, tmp_path):
    import pandas as pd

    from trainer.plan import build_offline_plan, compose_config
    from workers.fsdp_worker import actor_config

    pd.DataFrame([{"prompt": "1+1=", "chosen": "2", "rejected": "3"}] * 8).to_parquet(tmp_path / "p.parquet")
    spec = build_offline_plan(compose_config("offline_trainer", [
        f"model.path={tiny_model}", f"data.train_files={tmp_path / 'p.parquet'}", "data.kind=pairs", "loss.type=dpo",
        "loss.beta=0.3", "data.max_length=64", "trainer.device=cpu"]))
    cfg = actor_config(spec.worker())
    assert cfg.ppo_micro_batch_size_per_gpu == spec.data.micro_batch_size_per_gpu and cfg.grad_clip == 1.0
    assert cfg.dpo_beta == 0.3 and cfg.pair_mini_batch_size == spec.data.train_batch_size
    assert spec.worker().rollout is None and spec.ref.enabled
    worker = ActorRolloutRefWorker(spec.worker(), "actor_ref")
    assert worker._is_ref and not worker._is_rollout


# ---------------------------------------------------------------------------- one process
def test_roles_methods_need_init_and_the_right_role(tiny_model):
    worker = ActorRolloutRefWorker(make_spec(tiny_model), "ref")
    with pytest.raises(RuntimeError, match="init_model"):
        worker.compute_ref_log_prob(make_batch())
    worker._initialised = True
    with pytest.raises(RuntimeError, match="needs the actor role"):
        worker.update_actor(make_batch())


def test_generate_and_weight_sync_once_per_step(local_group):
    worker = local_group.workers[0]
    prompts = prompt_batch(worker.tokenizer)
    out = local_group.generate_sequences(prompts)
    assert len(out) == 4 and out.batch["responses"].shape == (4, R)
    assert list(out.non_tensor_batch["uid"]) == ["a", "a", "b", "b"]
    # the engine sampled from the actor's distribution: its log-probs match the actor's
    lp = local_group.compute_log_prob(out)
    torch.testing.assert_close(lp.batch["old_log_probs"], out.batch["rollout_log_probs"], atol=1e-4, rtol=1e-4)
    # no update since the last sync -> no second sync
    again = local_group.generate_sequences(prompts)
    assert again.meta_info["timing"]["weight_sync"] == 0.0

    data = with_advantages(out, lp)
    local_group.update_actor(data)
    new = local_group.generate_sequences(prompts)
    assert new.meta_info["timing"]["weight_sync"] > 0.0
    new_lp = local_group.compute_log_prob(new)
    torch.testing.assert_close(new_lp.batch["old_log_probs"], new.batch["rollout_log_probs"], atol=1e-4, rtol=1e-4)
    # and the actor did move: the old samples score differently now
    moved = local_group.compute_log_prob(out).batch["old_log_probs"]
    assert (moved - lp.batch["old_log_probs"]).abs().max() > 1e-3


def test_ref_is_frozen_while_actor_learns(local_group):
    data = make_batch(3)
    ref0 = local_group.compute_ref_log_prob(data).batch["ref_log_prob"]
    old = local_group.compute_log_prob(data)
    local_group.update_actor(with_advantages(data, old))
    ref1 = local_group.compute_ref_log_prob(data).batch["ref_log_prob"]
    assert torch.equal(ref0, ref1)
    assert (local_group.compute_log_prob(data).batch["old_log_probs"] - old.batch["old_log_probs"]).abs().max() > 1e-3
    assert all(not p.requires_grad for p in local_group.workers[0].ref_module.parameters())


def test_sft_step_does_not_advance_the_rl_schedule(local_group):
    worker = local_group.workers[0]
    data = make_batch(4)
    epoch = worker.lr_scheduler.last_epoch
    lr_before = local_group.get_lr()
    metrics = local_group.update_actor_sft(data).meta_info["metrics"]
    assert worker.lr_scheduler.last_epoch == epoch and local_group.get_lr() == lr_before
    assert metrics["sft/lr"] == [pytest.approx(5e-4)]  # relift.lr, restored afterwards
    assert metrics["sft/loss"][0] > 0
    local_group.update_actor(with_advantages(data, local_group.compute_log_prob(data)))
    assert worker.lr_scheduler.last_epoch == epoch + 1 and local_group.get_lr() != lr_before


def test_separate_sft_optimizer_state_survives_a_checkpoint(tiny_model, tmp_path):
    """relift.sft_optimizer=separate: its AdamW moments are saved and restored (ReLIFT's public code lost them)."""
    from trainer.plan import build_policy_worker_spec

    cfg = make_config(tiny_model)
    cfg.trainer.device = "cpu"
    cfg.relift.sft_optimizer = "separate"
    group = InProcessWorkerGroup(RayClassWithInitArgs(ActorRolloutRefWorker, build_policy_worker_spec(cfg, 10),
                                                      "actor"))
    try:
        group.init_model()
        worker = group.workers[0]
        assert worker.sft_optimizer is not None and worker.sft_optimizer is not worker.optimizer
        group.update_actor_sft(make_batch(1))
        group.save_checkpoint(str(tmp_path / "actor"), global_step=1)
        group.update_actor_sft(make_batch(2))
        after_a = full_params(worker)
        group.load_checkpoint(str(tmp_path / "actor"))
        group.update_actor_sft(make_batch(2))
        for k, v in full_params(worker).items():  # a fresh SFT AdamW would take a different second step
            assert torch.equal(v, after_a[k]), k
        assert worker.sft_optimizer.state and not worker.optimizer.state  # the RL AdamW never stepped
    finally:
        group.shutdown()


def test_checkpoint_round_trip_is_bit_exact(local_group, tmp_path):
    worker = local_group.workers[0]
    data = make_batch(5)
    stage = ck.begin_checkpoint(tmp_path, 7)
    local_group.save_checkpoint(str(stage / "actor"), global_step=7)
    ck.save_driver_state(stage, {"sampler": {"pos": 3}})
    ck.commit_checkpoint(tmp_path, 7)
    rng_after_save = torch.rand(4)
    saved_params = full_params(worker)

    def step():
        old = local_group.compute_log_prob(data)
        local_group.update_actor(with_advantages(data, old))
        return full_params(worker), local_group.get_lr(), {k: {n: v.clone() for n, v in s.items()}
                                                            for k, s in worker.optimizer.state.items()}

    params_a, lr_a, opt_a = step()
    assert local_group.load_checkpoint(str(ck.latest_checkpoint(tmp_path) / "actor")) == [7]
    torch.testing.assert_close(torch.rand(4), rng_after_save, rtol=0, atol=0)   # RNG restored
    for k, v in full_params(worker).items():
        assert torch.equal(v, saved_params[k]), k
    params_b, lr_b, opt_b = step()
    assert lr_a == lr_b
    for k in params_a:
        assert torch.equal(params_a[k], params_b[k]), k
    for idx in opt_a:
        for name in opt_a[idx]:
            a, b = opt_a[idx][name], opt_b[idx][name]
            a = a.to_local() if hasattr(a, "to_local") else a
            b = b.to_local() if hasattr(b, "to_local") else b
            assert torch.equal(a, b), (idx, name)
    files = sorted(p.name for p in (tmp_path / "global_step_7" / "actor").iterdir())
    assert {"model_world_size_1_rank_0.pt", "optim_world_size_1_rank_0.pt", "extra_state_world_size_1_rank_0.pt",
            "meta.json", "huggingface"} <= set(files)
    assert ck.load_driver_state(tmp_path / "global_step_7") == {"sampler": {"pos": 3}}


def test_keep_last_k_with_worker_checkpoints(local_group, tmp_path):
    for step in (1, 2, 3):
        stage = ck.begin_checkpoint(tmp_path, step)
        local_group.save_checkpoint(str(stage / "actor"), global_step=step)
        ck.commit_checkpoint(tmp_path, step, max_to_keep=2)
    assert ck.list_checkpoints(tmp_path) == [2, 3] and ck.read_tracker(tmp_path) == 3


def test_exported_model_gives_the_actors_logits(local_group, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    worker = local_group.workers[0]
    local_group.export_hf(str(tmp_path / "hf"))
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    tok = AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert tok.convert_tokens_to_ids("<think>") == worker.tokenizer.convert_tokens_to_ids("<think>")
    assert model.config.architectures == ["Qwen2ForCausalLM"]
    ids = make_batch(6).batch["input_ids"]
    with torch.no_grad():
        worker.actor_module.eval()
        want = worker.actor_module(input_ids=ids).logits
        worker.actor_module.train()
        got = model(input_ids=ids).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_world_size_mismatch_is_a_clear_error(local_group, tmp_path):
    from relift.single_controller import WorkerGroupError

    folder = tmp_path / "actor"
    local_group.save_checkpoint(str(folder), global_step=1)
    ck.write_meta(folder, world_size=2, global_step=1, contents=["model", "optimizer", "extra"])
    with pytest.raises(WorkerGroupError) as err:
        local_group.load_checkpoint(str(folder))
    msg = str(err.value)
    assert "saved with world size 2" in msg and "world size 1" in msg and "n_gpus_per_node" in msg


_KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[3])
    from tests.test_fsdp_worker import make_spec, make_batch
    from relift.single_controller import InProcessWorkerGroup, RayClassWithInitArgs
    from relift.utils import checkpoint as ck
    from workers.fsdp_worker import ActorRolloutRefWorker
    root, model = sys.argv[1], sys.argv[2]
    group = InProcessWorkerGroup(RayClassWithInitArgs(ActorRolloutRefWorker, make_spec(model), "actor"))
    group.init_model()
    stage = ck.begin_checkpoint(root, 1)
    group.save_checkpoint(str(stage / "actor"), global_step=1)
    ck.commit_checkpoint(root, 1)
    group.update_actor_sft(make_batch(0))           # the weights move on
    real_save = ck.atomic_save
    def slow_save(obj, path):                       # the first file of step 2 lands, then we stall
        real_save(obj, path)
        print("MID-SAVE", flush=True)
        time.sleep(120)
    ck.atomic_save = slow_save
    stage = ck.begin_checkpoint(root, 2)
    group.save_checkpoint(str(stage / "actor"), global_step=2)
    ck.commit_checkpoint(root, 2)
""")


def test_sigkill_during_worker_save_keeps_previous_checkpoint(tiny_model, tmp_path, local_group):
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(tmp_path), str(tiny_model), str(REPO)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    with sigkill_after(proc):
        line = ""
        while line.strip() != "MID-SAVE":
            line = proc.stdout.readline()
            if not line:
                pytest.fail(f"the saving process ended early: {proc.stderr.read()[-3000:]}")
    assert ck.read_tracker(tmp_path) == 1 and ck.list_checkpoints(tmp_path) == [1]
    assert (tmp_path / ".tmp-global_step_2" / "actor").is_dir()
    latest = ck.latest_checkpoint(tmp_path)
    assert local_group.load_checkpoint(str(latest / "actor")) == [1]
    # step 1 holds the tiny model's initial weights (saved before any update)
    from transformers import AutoModelForCausalLM

    initial = AutoModelForCausalLM.from_pretrained(tiny_model).state_dict()
    for k, v in full_params(local_group.workers[0]).items():
        assert torch.equal(v, initial[k]), k


# ---------------------------------------------------------------------------- two ranks through Ray
@pytest.mark.ray
def test_one_cpu_rank_in_fp32_trains_unwrapped_with_the_same_checkpoint_files(local_group):
    """World size 1 without mixed precision or offload skips FSDP2 (it would only copy weights);
    a one-rank FSDP2 module writes and reads the same per-rank files, so checkpoints carry over."""
    import copy

    from relift.utils import fsdp as fsdp_utils
    from workers.fsdp_model import needs_fsdp

    module = local_group.workers[0].actor_module
    assert not fsdp_utils.is_fsdp_module(module)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not needs_fsdp(1, None, False, cpu) and not needs_fsdp(1, None, True, cpu)
    assert needs_fsdp(2, None, False, cpu) and needs_fsdp(1, torch.bfloat16, False, cpu)
    assert needs_fsdp(1, None, True, cuda)
    wrapped = fsdp_utils.apply_fsdp2(copy.deepcopy(module))
    assert fsdp_utils.is_fsdp_module(wrapped)
    plain_state, wrapped_state = fsdp_utils.local_model_state(module), fsdp_utils.local_model_state(wrapped)
    assert plain_state.keys() == wrapped_state.keys()
    assert all(torch.equal(plain_state[k], wrapped_state[k]) for k in plain_state)
    with torch.no_grad():
        for p in wrapped.parameters():
            p.to_local().add_(1.0)
    fsdp_utils.load_local_model_state(wrapped, plain_state)  # a file of the unwrapped run loads into FSDP2
    reloaded = fsdp_utils.local_model_state(wrapped)
    assert all(torch.equal(plain_state[k], reloaded[k]) for k in plain_state)


def test_world_size_two_matches_one(ray_local, tiny_model, tmp_path, local_group):
    import ray

    from relift.single_controller import RayResourcePool, RayWorkerGroup, WorkerGroupError

    data = make_batch(8)
    # reference numbers from a fresh world-size-1 worker (same init, same data); local_group is only
    # requested so that this process's torch.distributed group is torn down after the module
    ref_group = InProcessWorkerGroup(RayClassWithInitArgs(ActorRolloutRefWorker, make_spec(tiny_model), "actor"))
    ref_group.init_model()
    lp1 = ref_group.compute_log_prob(data).batch["old_log_probs"]
    ref_group.update_actor(with_advantages(data, DataProto.from_dict({"old_log_probs": lp1})))
    after1 = ref_group.compute_log_prob(data).batch["old_log_probs"]
    dyn = DataProto.from_dict(dict(data.batch.items()), meta_info={"temperature": 1.0, "use_dynamic_bsz": True,
                                                                   "max_token_len": 24})
    dyn1 = ref_group.compute_log_prob(dyn).batch["old_log_probs"]

    pool = RayResourcePool([2], use_gpu=False)
    group = RayWorkerGroup(pool, RayClassWithInitArgs(ray.remote(ActorRolloutRefWorker), make_spec(tiny_model, world=2),
                                                      "actor_rollout"))
    try:
        group.init_model()
        lp2 = group.compute_log_prob(data).batch["old_log_probs"]
        torch.testing.assert_close(lp2, lp1, atol=1e-5, rtol=1e-5)
        metrics = group.update_actor(with_advantages(data, DataProto.from_dict({"old_log_probs": lp2})))
        assert metrics.meta_info["metrics"]["actor/grad_norm"][0] > 0
        after2 = group.compute_log_prob(data).batch["old_log_probs"]
        # global loss normalisers: the same update as one process although tokens fall unevenly on the ranks
        torch.testing.assert_close(after2, after1, atol=1e-5, rtol=1e-4)
        # token-budget micro-batches: rank 0's long rows need more micro-batches than rank 1's; no hang, same values
        dyn2 = group.compute_log_prob(dyn).batch["old_log_probs"]
        torch.testing.assert_close(dyn2, dyn1, atol=1e-5, rtol=1e-4)
        # generation through the synced replica on both ranks
        gen = group.generate_sequences(prompt_batch(ref_group.workers[0].tokenizer))
        assert len(gen) == 4 and gen.meta_info["timing"]["weight_sync"] > 0
        gen_lp = group.compute_log_prob(gen).batch["old_log_probs"]
        torch.testing.assert_close(gen_lp, gen.batch["rollout_log_probs"], atol=1e-4, rtol=1e-4)
        # a world-size-2 checkpoint refuses to load into world size 1, with the fix in the message
        group.save_checkpoint(str(tmp_path / "actor"), global_step=3)
        assert sorted(p.name for p in (tmp_path / "actor").glob("model_*")) == [
            "model_world_size_2_rank_0.pt", "model_world_size_2_rank_1.pt"]
        with pytest.raises(WorkerGroupError, match="saved with world size 2"):
            ref_group.load_checkpoint(str(tmp_path / "actor"))
        assert group.load_checkpoint(str(tmp_path / "actor")) == [3, 3]
        torch.testing.assert_close(group.compute_log_prob(data).batch["old_log_probs"], after2, atol=0, rtol=0)
    finally:
        group.shutdown(release_resources=True)
        ref_group.shutdown()


@pytest.mark.ray
def test_relift_sft_step_on_two_workers_matches_one(ray_local, tiny_model):
    """ReLIFT's fine-tuning step split over 2 ranks moves the weights exactly as one process does.

    Each rank gets half the demonstrations with uneven token counts (3 and 9 of 25); a 1/world_size
    factor or a mean of per-rank token-means (the public code's accumulation error) would not match.
    Both groups start fresh, so no earlier Adam state amplifies rounding differences.
    """
    import ray

    from relift.single_controller import RayResourcePool, RayWorkerGroup

    data, demos = make_batch(8), make_batch(11)
    # transformers' forward on both sides: the sharded ranks cannot take lean_forward, and this compares sharding
    spec = make_spec(tiny_model)
    spec = dataclasses.replace(spec, model=dataclasses.replace(spec.model, lean_forward=False))
    one = InProcessWorkerGroup(RayClassWithInitArgs(ActorRolloutRefWorker, spec, "actor"))
    pool = RayResourcePool([2], use_gpu=False)
    two = RayWorkerGroup(pool, RayClassWithInitArgs(ray.remote(ActorRolloutRefWorker), make_spec(tiny_model, world=2),
                                                    "actor"))
    try:
        results = []
        for group in (one, two):
            group.init_model()
            before = group.compute_log_prob(data).batch["old_log_probs"]
            metrics = group.update_actor_sft(demos).meta_info["metrics"]
            results.append((before, group.compute_log_prob(data).batch["old_log_probs"], metrics))
        (b1, a1, m1), (b2, a2, m2) = results
        assert torch.equal(b1, b2) and (a1 - b1).abs().max() > 1e-3  # same start, and the step moved the policy
        torch.testing.assert_close(a2, a1, atol=1e-6, rtol=1e-6)
        assert m2["sft/grad_norm"] == pytest.approx(m1["sft/grad_norm"], rel=1e-6)
        assert m2["sft/loss"] == pytest.approx(m1["sft/loss"], rel=1e-6)
    finally:
        two.shutdown(release_resources=True)
        one.shutdown()


# ---------------------------------------------------------------------------- CUDA (skipped without a GPU)
def _cuda_checks(rank: int, model_path: str) -> None:
    import torch.distributed as dist

    from relift.models.loading import load_causal_lm
    from workers.actor import DataParallelActor

    group = InProcessWorkerGroup(RayClassWithInitArgs(ActorRolloutRefWorker, make_spec(model_path, device="cuda"),
                                                      "actor_rollout_ref"))
    group.init_model()
    worker = group.workers[0]
    assert "nccl" in str(dist.get_backend()).lower()
    params = list(worker.actor_module.parameters())
    assert all(p.device.type == "cuda" and p.dtype == torch.float32 for p in params)  # fp32 master weights
    assert next(worker.rollout.module.parameters()).dtype == torch.bfloat16       # bf16 replica
    data = make_batch(0)
    lp = group.compute_log_prob(data).batch["old_log_probs"]
    plain = DataParallelActor(load_causal_lm(model_path), None, {"ppo_micro_batch_size_per_gpu": 4})
    want, _ = plain.compute_log_prob(data)
    mask = data.batch["response_mask"].bool()
    assert (lp - want)[mask].abs().max() < 0.1  # bf16 compute vs fp32 reference
    before = full_params(worker)
    metrics = group.update_actor(with_advantages(data, DataProto.from_dict({"old_log_probs": lp})))
    assert torch.isfinite(torch.tensor(metrics.meta_info["metrics"]["actor/grad_norm"])).all()
    after = full_params(worker)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    gen = group.generate_sequences(prompt_batch(worker.tokenizer))
    assert gen.meta_info["timing"]["weight_sync"] > 0 and len(gen) == 4
    dist.destroy_process_group()


@pytest.mark.gpu
def test_bf16_fsdp_nccl_on_cuda(tiny_model):
    import torch.multiprocessing as mp

    # a fresh process: this one may hold a gloo-only process group from the CPU tests
    mp.spawn(_cuda_checks, args=(str(tiny_model),), nprocs=1, join=True)
