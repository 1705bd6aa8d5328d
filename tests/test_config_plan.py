"""The Hydra configs compose, and the checked plan: its numbers, and one test per error it raises."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from trainer.plan import PlanError, build_offline_plan, build_rl_plan, compose_config, count_parquet_rows, render_spec

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """A 64-row train parquet, a 10-row val parquet, a model dir with only a config.json."""
    d = tmp_path_factory.mktemp("plan")
    row = {"data_source": "math", "prompt": [{"role": "user", "content": "1+1?"}],
           "reward_model": {"style": "rule", "ground_truth": "2"},
           "target": "2", "chosen": "2", "rejected": "3"}  # the offline plans read every row too
    pd.DataFrame([row] * 64).to_parquet(d / "train.parquet")
    pd.DataFrame([row] * 10).to_parquet(d / "val.parquet")
    (d / "model").mkdir()
    (d / "model" / "config.json").write_text(json.dumps({"max_position_embeddings": 1024}))
    return {"train": str(d / "train.parquet"), "val": str(d / "val.parquet"), "model": str(d / "model"),
            "dir": str(d)}


def rl_cfg(files, *overrides: str):
    base = [f"data.train_files={files['train']}", f"actor_rollout_ref.model.path={files['model']}",
            "trainer.device=cpu"]
    return compose_config("rl_trainer", base + list(overrides))


def off_cfg(files, *overrides: str):
    base = [f"data.train_files={files['train']}", f"model.path={files['model']}", "trainer.device=cpu"]
    return compose_config("offline_trainer", base + list(overrides))


def plan_error(build, cfg, **kw) -> str:
    with pytest.raises(PlanError) as ei:
        build(cfg, **kw)
    return str(ei.value)


# ---------------------------------------------------------------------------------------------- valid plans


def test_default_config_is_a_valid_quick_cpu_plan(files):
    plan = build_rl_plan(rl_cfg(files), dataset_len=count_parquet_rows(files["train"]))
    assert plan.world.device == "cpu" and plan.world.size == 1 and plan.rollout.name == "hf"
    assert plan.batch.dataset_rows == 64
    assert plan.batch.steps_per_epoch == 64 // 8 and plan.trainer.total_training_steps == 8
    assert plan.ref.enabled is False and plan.algorithm.adv_estimator == "grpo"


def test_plan_numbers_follow_verl_batch_semantics(files):
    cfg = rl_cfg(files, "trainer.n_gpus_per_node=2", "data.train_batch_size=8", "actor_rollout_ref.rollout.n=4",
                 "actor_rollout_ref.actor.ppo_mini_batch_size=4",
                 "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
                 "actor_rollout_ref.actor.ppo_epochs=3", "trainer.total_epochs=2",
                 "actor_rollout_ref.actor.optim.lr_warmup_steps_ratio=0.25", "actor_rollout_ref.actor.use_kl_loss=true")
    plan = build_rl_plan(cfg, dataset_len=70)
    b = plan.batch
    assert plan.world.size == 2
    assert b.sequences_per_step == 32 and b.sequences_per_worker == 16
    assert b.sequences_per_mini_batch == 16 and plan.actor.sequences_per_mini_batch_per_worker == 8
    assert b.mini_batches_per_step == 2
    assert b.optimizer_steps_per_step == 2 * 3 and not plan.on_policy
    assert plan.actor.train_micro.micro_batch_size_per_gpu == 2 and b.micro_batches_per_mini_batch == 4
    assert b.steps_per_epoch == 70 // 8 == 8 and plan.trainer.total_training_steps == 16
    assert plan.actor.optim.warmup_steps == 4  # 0.25 x 16
    assert plan.ref.enabled is True
    text = render_spec(plan)
    for line in ("sequences per step", "32  = 8 x 4", "16  = 32 / 2", "6  = 8 / 4 mini-batches x 3 ppo_epochs",
                 "4  = 8 / 2 (gradient accumulation)", "total training steps"):
        assert line in text, (line, text)


def test_explicit_total_steps_and_dynamic_budget(files):
    cfg = rl_cfg(files, "trainer.total_training_steps=5", "actor_rollout_ref.actor.use_dynamic_bsz=true",
                 "actor_rollout_ref.actor.ppo_max_token_len_per_gpu=512",
                 "actor_rollout_ref.actor.ppo_mini_batch_size=8")
    plan = build_rl_plan(cfg, dataset_len=None)
    assert plan.trainer.total_training_steps == 5 and plan.batch.steps_per_epoch is None
    assert plan.actor.train_micro.max_token_len_per_gpu == 512 and plan.batch.micro_batches_per_mini_batch is None
    assert plan.batch.optimizer_steps_per_step == 1 and plan.on_policy
    assert "token budget per micro-batch" in render_spec(plan)


# ------------------------------------------------------------------------------------- batch arithmetic errors


def test_sequences_per_step_must_divide_by_world_size(files):
    msg = plan_error(build_rl_plan, rl_cfg(files, "data.train_batch_size=128", "actor_rollout_ref.rollout.n=8",
                                           "trainer.n_gpus_per_node=3"))
    assert ("data.train_batch_size (128) x actor_rollout_ref.rollout.n (8) = 1024 sequences per step must divide "
            "by world size 3 (trainer.nnodes 1 x trainer.n_gpus_per_node 3)") in msg


def test_train_batch_must_divide_by_mini_batch(files):
    msg = plan_error(build_rl_plan, rl_cfg(files, "data.train_batch_size=6",
                                           "actor_rollout_ref.actor.ppo_mini_batch_size=4"))
    assert ("data.train_batch_size (6) must divide by actor_rollout_ref.actor.ppo_mini_batch_size (4): "
            "6 / 4 = 1.5") in msg


def test_mini_batch_larger_than_train_batch(files):
    msg = plan_error(build_rl_plan, rl_cfg(files, "data.train_batch_size=4",
                                           "actor_rollout_ref.actor.ppo_mini_batch_size=8"))
    assert "actor_rollout_ref.actor.ppo_mini_batch_size (8) must be <= data.train_batch_size (4)" in msg


def test_mini_batch_sequences_must_divide_by_world_size(files):
    # 8 x 3 = 24 sequences per step divide by 4, but 2 x 3 = 6 per mini-batch do not
    msg = plan_error(build_rl_plan, rl_cfg(files, "data.train_batch_size=8", "actor_rollout_ref.rollout.n=3",
                                           "actor_rollout_ref.actor.ppo_mini_batch_size=2", "trainer.nnodes=2",
                                           "trainer.n_gpus_per_node=2"))
    assert ("actor_rollout_ref.actor.ppo_mini_batch_size (2) x actor_rollout_ref.rollout.n (3) = 6 sequences per "
            "mini-batch must divide by world size 4 (trainer.nnodes 2 x trainer.n_gpus_per_node 2)") in msg
    assert "sequences per step must divide" not in msg


def test_mini_batch_per_worker_must_divide_by_micro_batch(files):
    msg = plan_error(build_rl_plan, rl_cfg(files, "trainer.n_gpus_per_node=2",
                                           "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=3"))
    assert ("sequences per mini-batch per worker 8 (= actor_rollout_ref.actor.ppo_mini_batch_size 4 x "
            "actor_rollout_ref.rollout.n 4 / world size 2) must divide by "
            "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu (3): 8 / 3 = 2.667") in msg


def test_micro_batch_is_not_checked_with_dynamic_bsz(files):
    plan = build_rl_plan(rl_cfg(files, "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=3",
                                "actor_rollout_ref.actor.use_dynamic_bsz=true"))
    assert plan.actor.train_micro.use_dynamic_bsz and plan.batch.micro_batches_per_mini_batch is None


def test_token_budget_must_hold_the_longest_sequence(files):
    msg = plan_error(build_rl_plan, rl_cfg(files, "actor_rollout_ref.actor.use_dynamic_bsz=true",
                                           "actor_rollout_ref.actor.ppo_max_token_len_per_gpu=300"))
    assert ("actor_rollout_ref.actor.ppo_max_token_len_per_gpu (300) must be >= data.max_prompt_length (256) + "
            "data.max_response_length (256) = 512") in msg
    # the log-prob budgets follow the actor's by interpolation and are checked too
    assert "actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu (300)" in msg


def test_rollout_lengths_must_match_data_lengths(files):
    msg = plan_error(build_rl_plan, rl_cfg(files, "actor_rollout_ref.rollout.response_length=100"))
    assert "actor_rollout_ref.rollout.response_length (100) must equal data.max_response_length (256)" in msg


def test_vllm_tensor_parallel_must_divide_world_size(files):
    msg = plan_error(build_rl_plan, rl_cfg(files, "actor_rollout_ref.rollout.name=vllm", "trainer.check_devices=false",
                                           "trainer.n_gpus_per_node=4",
                                           "actor_rollout_ref.rollout.tensor_model_parallel_size=3"))
    assert ("world size 4 (trainer.nnodes 1 x trainer.n_gpus_per_node 4) must divide by "
            "actor_rollout_ref.rollout.tensor_model_parallel_size (3)") in msg
    plan = build_rl_plan(rl_cfg(files, "actor_rollout_ref.rollout.name=vllm", "trainer.check_devices=false",
                                "trainer.n_gpus_per_node=4", "actor_rollout_ref.rollout.tensor_model_parallel_size=2"))
    assert plan.batch.rollout_replicas == 2 and plan.world.devices_checked is False


def test_hf_rollout_has_no_tensor_parallel(files):
    msg = plan_error(build_rl_plan, rl_cfg(files, "actor_rollout_ref.rollout.tensor_model_parallel_size=2",
                                           "trainer.n_gpus_per_node=2"))
    assert ("actor_rollout_ref.rollout.tensor_model_parallel_size (2) must be 1 with "
            "actor_rollout_ref.rollout.name=hf") in msg


def test_relift_batch_arithmetic(files):
    msg = plan_error(build_rl_plan, rl_cfg(files, "relift.enable=true", "relift.sft_batch_size=6",
                                           "trainer.n_gpus_per_node=4", "relift.buffer_size=4"))
    assert "relift.sft_batch_size (6) must divide by world size 4" in msg
    assert "relift.buffer_size (4) must be >= relift.sft_batch_size (6)" in msg
    msg = plan_error(build_rl_plan, rl_cfg(files, "relift.enable=true", "data.target_key=null",
                                           "relift.sft_optimizer=both"))
    assert "data.target_key" in msg
    assert "relift.sft_optimizer: unknown optimiser mode 'both'; choose one of shared, separate" in msg
    plan = build_rl_plan(rl_cfg(files, "relift.enable=true", "relift.sft_batch_size=16", "trainer.n_gpus_per_node=2"))
    assert plan.relift.sft_per_worker == 8 and plan.batch.relift_sft_micro_batches == 2  # micro 4 (actor's) per worker


def test_fsdp_shards_over_all_workers(files):
    msg = plan_error(build_rl_plan, rl_cfg(files, "trainer.n_gpus_per_node=4",
                                           "actor_rollout_ref.actor.fsdp_config.fsdp_size=2"))
    assert ("actor_rollout_ref.actor.fsdp_config.fsdp_size (2) must be -1 or the world size 4 "
            "(trainer.nnodes 1 x trainer.n_gpus_per_node 4)") in msg
    build_rl_plan(rl_cfg(files, "trainer.n_gpus_per_node=4", "actor_rollout_ref.actor.fsdp_config.fsdp_size=4"))


def test_reference_model_path_is_checked_when_a_kl_term_is_on(files):
    build_rl_plan(rl_cfg(files, "actor_rollout_ref.ref.model_path=/no/ref"))  # no KL term: no ref model
    msg = plan_error(build_rl_plan, rl_cfg(files, "actor_rollout_ref.ref.model_path=/no/ref",
                                           "algorithm.use_kl_in_reward=true", "algorithm.kl_ctrl.type=pid"))
    assert "actor_rollout_ref.ref.model_path: /no/ref does not exist" in msg
    assert "algorithm.kl_ctrl.type: unknown KL controller 'pid'; choose one of fixed, adaptive" in msg


def test_dataset_shorter_than_one_batch(files):
    msg = plan_error(build_rl_plan, rl_cfg(files), dataset_len=5)
    assert "data.train_files has 5 rows, fewer than data.train_batch_size (8): 5 // 8 = 0 full steps" in msg


def test_every_problem_is_reported_at_once(files):
    with pytest.raises(PlanError) as ei:
        build_rl_plan(rl_cfg(files, "data.train_batch_size=6", "algorithm.adv_estimator=ppo",
                             "data.train_files=/nonexistent/train.parquet"))
    assert len(ei.value.problems) == 3
    assert str(ei.value).startswith("invalid config (3 problems):")


def test_wrong_types_name_the_key(files):
    msg = plan_error(build_rl_plan, rl_cfg(files, "data.train_batch_size=abc", "actor_rollout_ref.actor.use_kl_loss=3"))
    assert "data.train_batch_size must be an integer, got 'abc'" in msg
    assert "actor_rollout_ref.actor.use_kl_loss must be true or false, got 3" in msg
    msg = plan_error(build_rl_plan, rl_cfg(files, "trainer.nnodes=0"))
    assert "trainer.nnodes (0) must be >= 1" in msg


# ----------------------------------------------------------------------------------- names, files and devices


def test_unknown_adv_estimator_lists_the_registry(files):
    from relift.algorithms.advantages import list_adv_estimators

    msg = plan_error(build_rl_plan, rl_cfg(files, "algorithm.adv_estimator=ppo"))
    assert "algorithm.adv_estimator: unknown estimator 'ppo'; known: " + ", ".join(list_adv_estimators()) in msg
    for est in ("grpo", "reinforce_plus_plus", "reinforce_plus_plus_baseline", "rloo"):
        assert build_rl_plan(rl_cfg(files, f"algorithm.adv_estimator={est}")).algorithm.adv_estimator == est


def test_unknown_choices(files):
    msg = plan_error(build_rl_plan, rl_cfg(files, "actor_rollout_ref.actor.loss_agg_mode=token-sum",
                                           "actor_rollout_ref.actor.use_kl_loss=true",
                                           "actor_rollout_ref.actor.kl_loss_type=k9", "trainer.logger=[console,mlflow]",
                                           "actor_rollout_ref.actor.optim.lr_scheduler_type=step"))
    assert "actor_rollout_ref.actor.loss_agg_mode: unknown loss aggregation mode 'token-sum'" in msg
    assert "actor_rollout_ref.actor.kl_loss_type: unknown KL estimator 'k9'" in msg
    assert "trainer.logger: unknown backend 'mlflow'" in msg
    assert ("actor_rollout_ref.actor.optim.lr_scheduler_type: unknown schedule 'step'; "
            "choose one of constant, cosine, linear") in msg


def test_dual_clip_constant_must_exceed_one(files):
    msg = plan_error(build_rl_plan, rl_cfg(files, "actor_rollout_ref.actor.clip_ratio_c=1.0"))
    assert "actor_rollout_ref.actor.clip_ratio_c (1) must be > 1" in msg
    build_rl_plan(rl_cfg(files, "actor_rollout_ref.actor.clip_ratio_c=1.0",
                         "actor_rollout_ref.actor.loss_remove_clip=true"))


def test_custom_reward_function_file_and_name(files, tmp_path):
    msg = plan_error(build_rl_plan, rl_cfg(files, f"reward.custom_reward_function.path={tmp_path}/missing.py"))
    assert f"reward.custom_reward_function.path: file not found: {tmp_path}/missing.py" in msg
    f = tmp_path / "my_reward.py"
    f.write_text(textwrap.dedent("""
        raise RuntimeError("planning must not execute this file")
        def helper(x):
            return x
        def my_score(data_source, solution_str, ground_truth, extra_info=None):
            return 1.0
    """))
    msg = plan_error(build_rl_plan, rl_cfg(files, f"reward.custom_reward_function.path={f}"))
    assert (f"reward.custom_reward_function.name: {f} defines no function 'compute_score' "
            "(functions there: helper, my_score)") in msg
    plan = build_rl_plan(rl_cfg(files, f"reward.custom_reward_function.path={f}",
                                "reward.custom_reward_function.name=my_score"))
    custom = plan.reward.custom_reward_function
    assert (custom.path, custom.name) == (str(f), "my_score")


def test_missing_data_files(files):
    msg = plan_error(build_rl_plan, rl_cfg(files, "data.train_files=null"))
    assert "data.train_files is not set" in msg
    msg = plan_error(build_rl_plan, rl_cfg(files, f"data.train_files=[{files['train']},/nope/b.parquet]",
                                           "data.val_files=/nope/val.parquet"))
    assert "data.train_files: file not found: /nope/b.parquet" in msg
    assert "data.val_files: file not found: /nope/val.parquet" in msg
    assert files["train"] not in msg
    plan = build_rl_plan(rl_cfg(files, f"data.val_files={files['val']}", "trainer.test_freq=5"))
    assert plan.data.val_files and "every 5 steps" in render_spec(plan)
    assert build_rl_plan(rl_cfg(files, "data.train_files=hf://datasets/org/name/train.parquet")) is not None
    assert count_parquet_rows([files["train"], files["val"]]) == 74
    assert count_parquet_rows("hf://datasets/org/name/train.parquet") is None


def test_model_path_local_or_hub_id(files, tmp_path):
    msg = plan_error(build_rl_plan, rl_cfg(files, "actor_rollout_ref.model.path=./no/such/model"))
    assert ("actor_rollout_ref.model.path: ./no/such/model does not exist and does not look like a hub id "
            "(org/name)") in msg
    msg = plan_error(build_rl_plan, rl_cfg(files, f"actor_rollout_ref.model.path={tmp_path}"))
    assert f"actor_rollout_ref.model.path: {tmp_path} has no config.json" in msg
    msg = plan_error(build_rl_plan, rl_cfg(files, "actor_rollout_ref.model.path=null"))
    assert "actor_rollout_ref.model.path is not set" in msg
    assert build_rl_plan(rl_cfg(files, "actor_rollout_ref.model.path=Qwen/Qwen2.5-Math-1.5B")) is not None


def test_lengths_beyond_the_models_positions(files):
    msg = plan_error(build_rl_plan, rl_cfg(files, "data.max_response_length=1000"))
    assert ("data.max_prompt_length (256) + data.max_response_length (1000) = 1256 exceeds the model's "
            "max_position_embeddings (1024)") in msg
    build_rl_plan(rl_cfg(files, "data.max_response_length=1000",
                         "++actor_rollout_ref.model.override_config.max_position_embeddings=2048"))


def test_resume_path_needs_a_directory(files):
    msg = plan_error(build_rl_plan, rl_cfg(files, "trainer.resume_mode=resume_path"))
    assert "trainer.resume_mode=resume_path needs trainer.resume_from_path" in msg
    msg = plan_error(build_rl_plan, rl_cfg(files, "trainer.resume_mode=resume_path",
                                           "trainer.resume_from_path=/nope/global_step_3"))
    assert "trainer.resume_from_path: directory not found: /nope/global_step_3" in msg


def test_val_only_needs_val_files(files):
    msg = plan_error(build_rl_plan, rl_cfg(files, "trainer.val_only=true"))
    assert "trainer.val_only=true needs data.val_files" in msg


def test_cuda_and_vllm_need_a_gpu(files):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    msg = plan_error(build_rl_plan, rl_cfg(files, "trainer.device=cuda"))
    assert "trainer.device=cuda but torch sees no CUDA device" in msg
    msg = plan_error(build_rl_plan, rl_cfg(files, "trainer.device=auto", "actor_rollout_ref.rollout.name=vllm"))
    assert "actor_rollout_ref.rollout.name=vllm needs CUDA but this run is on cpu" in msg
    assert "use actor_rollout_ref.rollout.name=hf" in msg
    plan = build_rl_plan(rl_cfg(files, "trainer.device=cuda", "actor_rollout_ref.rollout.name=vllm",
                                "trainer.check_devices=false"))
    assert plan.world.device == "cuda" and not plan.world.devices_checked
    assert re.search(r"mixed precision +bf16", render_spec(plan))
    assert build_rl_plan(rl_cfg(files, "trainer.device=auto")).world.device == "cpu"


# ------------------------------------------------------------------------------------------------ offline plan


def test_offline_plan_numbers(files):
    cfg = off_cfg(files, "data.kind=pairs", "loss.type=redi", "data.train_batch_size=32",
                  "data.micro_batch_size_per_gpu=4", "trainer.n_gpus_per_node=2", "optim.lr_warmup_steps_ratio=0.1")
    plan = build_offline_plan(cfg, dataset_len=100)
    assert plan.batch.examples_per_worker == 16 and plan.batch.micro_batches_per_step == 4
    assert plan.batch.sequences_per_forward == 8  # chosen and rejected stacked
    assert plan.batch.steps_per_epoch == 3 and plan.trainer.total_training_steps == 3
    assert plan.actor.optim.warmup_steps == 0
    assert plan.loss.type == "redi" and plan.loss.alpha == 0.8 and not plan.ref.enabled
    assert "redi  alpha=0.8" in render_spec(plan)
    dpo = build_offline_plan(off_cfg(files, "data.kind=pairs", "loss.type=dpo"))
    assert dpo.ref.enabled and dpo.loss.beta == 0.1 and "dpo  beta=0.1" in render_spec(dpo)
    simpo = build_offline_plan(off_cfg(files, "data.kind=pairs", "loss.type=simpo"))
    assert (simpo.loss.beta, simpo.loss.gamma) == (2.0, 1.0) and "beta=2, gamma=1" in render_spec(simpo)
    assert "relift offline plan" in render_spec(plan) and "pairs per step" in render_spec(plan)


def test_offline_plan_errors(files):
    msg = plan_error(build_offline_plan, off_cfg(files, "loss.type=dpo"))
    assert "loss.type=dpo needs data.kind=pairs, got data.kind=sft" in msg
    msg = plan_error(build_offline_plan, off_cfg(files, "loss.type=ppo"))
    assert "loss.type: unknown loss 'ppo'; choose one of sft, redi, dpo, simpo" in msg
    msg = plan_error(build_offline_plan, off_cfg(files, "data.train_batch_size=10", "trainer.n_gpus_per_node=4"))
    assert ("data.train_batch_size (10) must divide by world size 4 (trainer.nnodes 1 x trainer.n_gpus_per_node 4): "
            "10 / 4 = 2.5") in msg
    msg = plan_error(build_offline_plan, off_cfg(files, "data.train_batch_size=12", "trainer.n_gpus_per_node=2",
                                                 "data.micro_batch_size_per_gpu=4"))
    assert ("examples per worker 6 (= data.train_batch_size 12 / world size 2) must divide by "
            "data.micro_batch_size_per_gpu (4): 6 / 4 = 1.5") in msg
    msg = plan_error(build_offline_plan, off_cfg(files, "model.path=/no/model", "data.max_length=4096"))
    assert "model.path: /no/model does not exist" in msg
    msg = plan_error(build_offline_plan, off_cfg(files, "data.max_length=4096"))
    assert "data.max_length (4096) exceeds the model's max_position_embeddings (1024)" in msg
    msg = plan_error(build_offline_plan, off_cfg(files, "data.kind=pairs", "loss.type=dpo", "loss.beta=0"))
    assert "loss.beta (0) must be > 0" in msg


# ------------------------------------------------------------------------------------------------ entry points


def _run(args: list[str], cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_main_rl_dry_run_prints_the_plan_without_ray(files):
    # run the module as `python -m` would, then report whether ray was ever imported
    code = ("import runpy, sys\n"
            "sys.argv = ['trainer.main_rl'] + sys.argv[1:]\n"
            "try:\n    runpy.run_module('trainer.main_rl', run_name='__main__', alter_sys=True)\n"
            "except SystemExit as e:\n    print('EXIT', e.code)\n"
            "print('RAY_IMPORTED', 'ray' in sys.modules)\n")
    res = _run([PY, "-c", code, "trainer.dry_run=true", f"data.train_files={files['train']}",
                f"actor_rollout_ref.model.path={files['model']}", "trainer.n_gpus_per_node=2"])
    assert res.returncode == 0, res.stderr
    assert "relift RL plan" in res.stdout
    assert "sequences per step" in res.stdout and "32  = 8 x 4" in res.stdout
    assert "trainer.dry_run=true: config checked" in res.stdout
    assert "RAY_IMPORTED False" in res.stdout and "EXIT" not in res.stdout


def test_main_rl_bad_config_exits_2_with_the_keys(files, tmp_path):
    res = _run([PY, "-m", "trainer.main_rl", "trainer.dry_run=true", f"data.train_files={files['train']}",
                f"actor_rollout_ref.model.path={files['model']}", "data.train_batch_size=6"], cwd=REPO)
    assert res.returncode == 2
    assert "data.train_batch_size (6) must divide by actor_rollout_ref.actor.ppo_mini_batch_size (4)" in res.stderr
    assert "relift RL plan" not in res.stdout


def test_main_offline_dry_run(files, tmp_path):
    res = _run([PY, "-m", "trainer.main_offline", "trainer.dry_run=true", f"data.train_files={files['train']}",
                f"model.path={files['model']}", "data.kind=pairs", "loss.type=redi"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "relift offline plan" in res.stdout and "redi" in res.stdout
    assert "train rows" in res.stdout and "64" in res.stdout
    assert list(tmp_path.iterdir()) == []  # Hydra wrote no outputs/ or .hydra folders into the cwd


def test_run_main_hands_config_and_plan_to_the_trainer(files, monkeypatch, capsys):
    import types

    from relift.spec import OfflineRunSpec, RLRunSpec
    from trainer import main_offline, main_rl

    seen = {}
    monkeypatch.setitem(sys.modules, "trainer.rl_trainer", types.SimpleNamespace(run=lambda spec: seen.update(rl=spec)))
    monkeypatch.setitem(sys.modules, "trainer.offline_trainer",
                        types.SimpleNamespace(run=lambda spec: seen.update(off=spec)))
    cfg = rl_cfg(files)
    assert main_rl.run_main(cfg) == 0
    assert isinstance(seen["rl"], RLRunSpec) and seen["rl"].batch.dataset_rows == 64
    assert "relift RL plan" in capsys.readouterr().out
    assert main_offline.run_main(off_cfg(files)) == 0
    assert isinstance(seen["off"], OfflineRunSpec)
    assert main_rl.run_main(rl_cfg(files, "data.train_batch_size=6")) == 2
    assert "data.train_batch_size (6)" in capsys.readouterr().err
