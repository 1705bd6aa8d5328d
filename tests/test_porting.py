"""verl and ReLIFT scripts port by renaming the module: their published override lists plan here, and
the plan is what they meant (tests/data/porting/ holds the lists, each naming its source).

Expected numbers are read off the scripts by hand (batch sizes, n, lengths, lr, estimator, loss
mode, KL); per-worker counts are the scripts' numbers divided by their world size.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from trainer.plan import PlanError, build_rl_plan, compose_config, count_parquet_rows
from trainer.plan.compat import known_keys, markdown_table, match_rule, port_overrides
from trainer.plan.compat_table import RULES

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "porting"
DRY = ["trainer.dry_run=true", "trainer.check_devices=false"]
A, RO = "actor_rollout_ref.actor", "actor_rollout_ref.rollout"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """2048 training rows (verl's examples take 1024 prompts a step), a model dir with a config.json
    long enough for ReLIFT's 1024 + 8192 tokens, and a reward file defining ReLIFT's function name."""
    d = tmp_path_factory.mktemp("porting")
    row = {
        "data_source": "math",
        "prompt": [{"role": "user", "content": "1+1?"}],
        "reward_model": {"style": "rule", "ground_truth": "2"},
        "target": [{"role": "assistant", "content": "<think>1+1=2</think> \\boxed{2}"}],
    }
    for name, rows in (("train", 2048), ("train2", 16), ("val", 8), ("val2", 8)):
        pd.DataFrame([row] * rows).to_parquet(d / f"{name}.parquet")
    (d / "model").mkdir()
    (d / "model" / "config.json").write_text(json.dumps({"max_position_embeddings": 32768}))
    (d / "reward.py").write_text(
        "def my_reward_func(data_source, solution_str, ground_truth, extra_info=None):\n"
        "    return float(solution_str.strip() == str(ground_truth))\n"
    )
    return {
        "TRAIN": str(d / "train.parquet"),
        "TRAIN2": str(d / "train2.parquet"),
        "VAL": str(d / "val.parquet"),
        "VAL2": str(d / "val2.parquet"),
        "MODEL": str(d / "model"),
        "REWARD_FILE": str(d / "reward.py"),
        "CKPT_DIR": str(d / "ckpt"),
        "dir": str(d),
    }


def published(name: str, files: dict[str, str]) -> list[str]:
    """The script's overrides with its paths swapped for the tiny local files."""
    lines = (DATA / f"{name}.txt").read_text().splitlines()
    out = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    return [re.sub(r"\{([A-Z_0-9]+)\}", lambda m: files[m.group(1)], o) for o in out]


def plan(name: str, files: dict[str, str], *extra: str):
    cfg = compose_config("rl_trainer", published(name, files) + DRY + list(extra))
    return build_rl_plan(cfg, dataset_len=count_parquet_rows(cfg.data.train_files))


def plan_error(overrides: list[str]) -> str:
    with pytest.raises(PlanError) as ei:
        cfg = compose_config("rl_trainer", overrides)
        build_rl_plan(cfg, dataset_len=count_parquet_rows(cfg.data.train_files))
    return str(ei.value)


def check_common(p, *, world, B, n, P, R, lr, est, agg="token-mean"):
    assert p.world.size == world
    assert p.data.train_batch_size == B and p.rollout.sampling.n == n
    assert p.data.max_prompt_length == P and p.data.max_response_length == R
    assert p.batch.sequences_per_step == B * n and p.batch.sequences_per_worker == B * n // world
    assert p.actor.optim.lr == lr and p.algorithm.adv_estimator == est
    assert p.actor.policy_loss.loss_agg_mode == agg
    assert p.rollout.name == "vllm" and p.trainer.dry_run


# ------------------------------------------------------------------------------------- verl's examples


@pytest.mark.parametrize("name, P, micro", [("verl_grpo_qwen2-7b", 512, 40), ("verl_grpo_qwen2-7b_math", 1024, 16)])
def test_verl_grpo_examples_plan_as_published(name, P, micro, files, capsys):
    p = plan(name, files)
    check_common(p, world=8, B=1024, n=5, P=P, R=1024, lr=1e-6, est="grpo")
    assert p.actor.ppo_mini_batch_size == 256 and p.batch.sequences_per_mini_batch == 256 * 5
    assert p.actor.sequences_per_mini_batch_per_worker == 256 * 5 // 8
    assert p.actor.train_micro.micro_batch_size_per_gpu == micro
    assert p.batch.micro_batches_per_mini_batch == 160 // micro
    assert p.rollout.tensor_model_parallel_size == 2 and p.rollout.gpu_memory_utilization == 0.6
    kl = name == "verl_grpo_qwen2-7b"  # the _math script turns the KL loss off
    assert p.actor.policy_loss.use_kl_loss is kl and p.ref.enabled is kl
    if kl:
        assert p.actor.policy_loss.kl_loss_coef == 0.001 and p.actor.policy_loss.kl_loss_type == "low_var_kl"
    assert p.data.truncation == "filter"  # filter_overlong_prompts=True
    assert p.trainer.total_epochs == 15 and p.trainer.save_freq == 20 and p.trainer.test_freq == 5
    err = capsys.readouterr().err
    assert "trainer.critic_warmup=0: accepted" in err and "use_remove_padding" not in err  # a relift key now


@pytest.mark.parametrize(
    "name, est",
    [
        ("verl_reinforce_pp_qwen2-7b_math_rf", "reinforce_plus_plus"),
        ("verl_reinforce_pp_qwen2-7b_math_rf_baseline", "reinforce_plus_plus_baseline"),
    ],
)
def test_verl_reinforce_pp_examples(name, est, files):
    p = plan(name, files)
    check_common(p, world=16, B=1024, n=8, P=1024, R=1024, lr=3e-6, est=est)
    assert p.batch.mini_batches_per_step == 1 and p.actor.sequences_per_mini_batch_per_worker == 1024 * 8 // 16
    assert p.actor.policy_loss.use_kl_loss and p.actor.policy_loss.kl_loss_type == "mse"
    assert p.ref.enabled and not p.algorithm.use_kl_in_reward


def test_verl_rloo_example_keeps_the_kl_in_the_reward(files):
    p = plan("verl_rloo_qwen2-7b", files)
    check_common(p, world=8, B=1024, n=5, P=512, R=1024, lr=1e-6, est="rloo")
    assert not p.actor.policy_loss.use_kl_loss and p.algorithm.use_kl_in_reward
    assert p.algorithm.kl_penalty == "kl" and p.algorithm.kl_ctrl.kl_coef == 0.001 and p.ref.enabled
    assert p.actor.train_micro.micro_batch_size_per_gpu == 80 and p.actor.log_prob_micro.micro_batch_size_per_gpu == 160


def test_verl_async_sglang_example_is_rejected_with_the_way_out(files):
    msg = plan_error(published("verl_grpo_qwen2-7b_seq_balance", files) + DRY)
    assert "actor_rollout_ref.rollout.mode=async" in msg and "synchronous" in msg
    # the way out the message names, plus the engine relift has: then it plans
    p = plan("verl_grpo_qwen2-7b_seq_balance", files, f"{RO}.mode=sync", f"{RO}.name=vllm")
    check_common(p, world=8, B=1024, n=5, P=512, R=1024, lr=1e-6, est="grpo")
    assert p.actor.train_micro.use_dynamic_bsz and p.actor.train_micro.max_token_len_per_gpu == 24000


def test_verl_qwen3_example_hits_relifts_stricter_mini_batch_rule(files):
    """1024 prompts do not split into mini-batches of 80 (verl runs a short last mini-batch); relift
    refuses, naming both keys and the arithmetic."""
    msg = plan_error(published("verl_grpo_qwen3-1.7b", files) + DRY)
    assert "data.train_batch_size (1024) must divide by actor_rollout_ref.actor.ppo_mini_batch_size (80)" in msg
    p = plan("verl_grpo_qwen3-1.7b", files, "data.train_batch_size=960")  # 12 mini-batches of 80
    check_common(p, world=8, B=960, n=3, P=512, R=1024, lr=1e-6, est="grpo")
    assert p.batch.mini_batches_per_step == 12 and p.batch.micro_batches_per_mini_batch == 80 * 3 // 8 // 10


# ------------------------------------------------------------------------------------- ReLIFT's scripts


def test_old_relift_scripts_keep_their_engine_token_budget(files):
    """The fork ran vLLM with max_num_batched_tokens 8192 under 1024 + 8192 tokens (chunked prefill): kept."""
    p = plan("relift_math-1.5b_train", files)
    assert p.rollout.max_num_batched_tokens == 8192 and p.rollout.prompt_length + p.rollout.response_length == 9216


def check_relift_rl_phase(p, world):
    check_common(p, world=world, B=128, n=8, P=1024, R=8192, lr=1e-6, est="grpo", agg="seq-mean-token-sum-norm")
    assert p.batch.sequences_per_mini_batch == 64 * 8 and p.batch.optimizer_steps_per_step == 2
    assert p.actor.policy_loss.loss_remove_clip and p.actor.policy_loss.entropy_coeff == 0.001
    assert not p.algorithm.norm_adv_by_std_in_grpo and not p.ref.enabled
    assert p.actor.train_micro.use_dynamic_bsz and p.actor.train_micro.max_token_len_per_gpu == 32768
    assert p.actor.grad_clip == 0.7
    assert p.rollout.val_sampling.n == 1 and p.rollout.val_sampling.temperature == 0.6
    assert p.rollout.val_sampling.do_sample  # val_temperature 0.6 meant sampling
    assert p.reward.custom_reward_function.path == str(REPO / "relift" / "rewards" / "math_v3.py")
    assert p.reward.custom_reward_function.name == "compute_score"
    assert p.data.max_target_length == 8192 and not p.trainer.val_before_train
    assert p.relift.enable and p.relift.sft_batch_size == 128 and p.relift.entropy_coeff == 0.001
    assert p.relift.lr == 1e-6 and p.relift.sft_optimizer == "separate"


def test_relift_math_1_5b_script_ports_its_old_fork_keys(files, capsys):
    p = plan("relift_math-1.5b_train", files)
    check_relift_rl_phase(p, world=8)
    assert p.relift.sft_per_worker == 128 // 8 and p.trainer.total_epochs == 3
    err = capsys.readouterr().err
    for shown in (
        "data.max_target_len -> data.max_target_length=8192",
        f"{A}.loss_remove_token_mean -> {A}.loss_agg_mode=seq-mean-token-sum-norm",
        "algorithm.grpo_use_std -> algorithm.norm_adv_by_std_in_grpo=False",
        f"{A}.ppo_micro_batch_size=64: accepted, unused ({A}.use_dynamic_bsz=true",
        "+trainer.val_before_train: already a relift key",
    ):
        assert shown in err, (shown, err)


def test_relift_two_node_script(files):
    p = plan("relift_qwen-math-7b_train_two_node", files)
    check_relift_rl_phase(p, world=16)
    assert p.relift.sft_per_worker == 128 // 16 and p.trainer.total_epochs == 5


def test_relift_math_7b_script_of_the_rebased_fork(files):
    p = plan("relift_math-7b_train", files)
    check_common(p, world=32, B=128, n=8, P=1024, R=8192, lr=1e-6, est="grpo")  # this fork kept token-mean
    assert p.actor.policy_loss.clip_ratio_low == 0.2 and p.actor.policy_loss.clip_ratio_high == 0.28
    assert p.actor.grad_clip == 0.5 and p.data.truncation == "left" and not p.algorithm.norm_adv_by_std_in_grpo
    assert p.relift.enable and p.relift.sft_batch_size == 64 and p.relift.entropy_coeff == 0.0
    assert p.relift.micro.micro_batch_size_per_gpu == 4 and p.relift.sft_optimizer == "separate"
    assert p.reward.custom_reward_function.path == files["REWARD_FILE"]
    assert p.reward.custom_reward_function.name == "my_reward_func"
    assert p.rollout.max_num_batched_tokens == 14336 and p.rollout.val_sampling.temperature == 0.6


def test_main_rl_end_to_end_in_a_subprocess(files):
    """The renamed command as a user runs it: notices on stderr, the plan on stdout, exit 0; a
    rejected key exits 2 with one short message and no traceback."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    cmd = [
        sys.executable,
        "-m",
        "trainer.main_rl",
        *published("relift_math-1.5b_train", files),
        *DRY,
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=files["dir"], env=env)
    assert res.returncode == 0, res.stderr
    assert "relift RL plan" in res.stdout and "config checked" in res.stdout
    assert "[relift] compat: actor_rollout_ref.actor.sft.sft_data_size -> relift.sft_batch_size=128" in res.stderr
    res = subprocess.run(
        [*cmd, "trainer.critic_warmup=10"], capture_output=True, text=True, timeout=300, cwd=files["dir"], env=env
    )
    assert res.returncode == 2 and "no critic" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.splitlines()) <= 4


# ------------------------------------------------------------------------------------- rejections


def base(files) -> list[str]:
    return [f"data.train_files={files['TRAIN']}", f"actor_rollout_ref.model.path={files['MODEL']}", *DRY]


@pytest.mark.parametrize(
    "override, names",
    [
        ("trainer.critic_warmup=5", "relift has no critic"),
        (f"{RO}.mode=async", f"drop {RO}.mode"),
        (f"{RO}.multi_turn.enable=true", f"drop the {RO}.multi_turn.* keys"),
        (f"{A}.ulysses_sequence_parallel_size=2", f"{A}.use_dynamic_bsz=true"),
        (f"{A}.sft.sft_epochs=2", "relift.sft_batch_size"),
        ("data.reward_impl_version=2", "reward.custom_reward_function.path"),
        ("reward_model.enable=true", "reward.custom_reward_function"),
        ("trainer.default_hdfs_dir=/hdfs/x", "trainer.default_local_dir"),
        (f"{A}.fsdp_config.sft_use_lora=true", "LoRA is not implemented"),
    ],
)
def test_rejected_values_name_what_to_use(override, names, files):
    msg = plan_error(base(files) + [override])
    assert override.split("=")[0] in msg and names in msg


def test_harmless_values_of_the_same_keys_pass(files):
    ok = [
        "trainer.critic_warmup=0",
        f"{RO}.mode=sync",
        f"{RO}.multi_turn.enable=false",
        f"{A}.ulysses_sequence_parallel_size=1",
        "reward_model.enable=False",
        "trainer.default_hdfs_dir=null",
    ]
    assert build_rl_plan(compose_config("rl_trainer", base(files) + ok)).algorithm.adv_estimator == "grpo"


def test_cross_key_checks_after_composition(files):
    msg = plan_error(base(files) + [f"{A}.sft.grad_clip=0.5"])  # actor grad_clip stays at 1.0
    assert f"{A}.grad_clip=0.5 (it is 1.0)" in msg
    msg = plan_error(base(files) + [f"{A}.sft.sft_data_size=8", f"{A}.sft.sft_mini_batch_size=4"])
    assert "relift.sft_batch_size=4 (it is 8)" in msg
    msg = plan_error(base(files) + ["actor_rollout_ref.ref.use_ref=False", f"{A}.use_kl_loss=true"])
    assert f"{A}.use_kl_loss=false (it is true)" in msg


def test_global_micro_batch_is_divided_by_the_world_size(files):
    cfg = compose_config("rl_trainer", base(files) + ["trainer.n_gpus_per_node=4", f"{A}.ppo_micro_batch_size=8"])
    assert cfg.actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu == 2
    msg = plan_error(base(files) + ["trainer.n_gpus_per_node=4", f"{A}.ppo_micro_batch_size=6"])
    assert "6 / 4 is not a whole number" in msg and f"{A}.ppo_micro_batch_size_per_gpu" in msg
    msg = plan_error(base(files) + [f"{A}.ppo_micro_batch_size=8", f"{A}.ppo_micro_batch_size_per_gpu=8"])
    assert "keep only actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu" in msg


def test_an_explicit_relift_key_wins_over_an_implied_one(files):
    cfg = compose_config("rl_trainer", base(files) + [f"{A}.sft.sft_data_size=8", "relift.enable=false"])
    assert cfg.relift.enable is False and cfg.relift.sft_batch_size == 8


# ------------------------------------------------------------------------------------- unknown keys


def test_plus_typo_warns_with_the_closest_key_and_changes_nothing(files, capsys):
    cfg = compose_config("rl_trainer", base(files) + ["+trainer.val_befor_train=false"])
    err = capsys.readouterr().err
    assert "WARNING +trainer.val_befor_train=false" in err and "did you mean trainer.val_before_train?" in err
    assert cfg.trainer.val_before_train is True


def test_plain_unknown_key_is_an_error_with_the_closest_key(files):
    msg = plan_error(base(files) + ["actor_rollout_ref.actor.ppo_mini_bach_size=4"])
    assert "unknown key actor_rollout_ref.actor.ppo_mini_bach_size" in msg
    assert "did you mean actor_rollout_ref.actor.ppo_mini_batch_size?" in msg


def test_open_maps_and_hydra_keys_pass_untouched():
    p = port_overrides(
        "rl_trainer",
        [
            "+actor_rollout_ref.model.override_config.rope_theta=1e6",
            "hydra.verbose=true",
            "++trainer.seed=3",
            "~ray_init.address",
        ],
    )
    assert p.overrides == [
        "+actor_rollout_ref.model.override_config.rope_theta=1e6",
        "hydra.verbose=true",
        "++trainer.seed=3",
        "~ray_init.address",
    ]
    assert not p.notices and not p.problems


# ------------------------------------------------------------------------------------- the table itself


def test_table_agrees_with_the_yaml():
    """A "same" row names a relift key; an alias targets one; any other row names a key relift's
    yaml lacks (when relift grows the key, e.g. use_remove_padding, the row must become "same")."""
    keys, _ = known_keys("rl_trainer")
    for r in RULES:
        if r.status == "same":
            assert r.key in keys, r.key
        elif "*" not in r.key:
            assert r.key not in keys, f"{r.key} is a relift key now: make its row 'same'"
        if r.status == "alias" and not r.relift.endswith(".*"):
            assert r.relift in keys, r
        for k in (*r.requires, *(k for kv in (r.checks or {}).values() for k, _ in kv)):
            assert k in keys, (r.key, k)


def test_every_published_key_has_a_row():
    for f in sorted(DATA.glob("*.txt")):
        for line in f.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                key = line.lstrip("+").split("=", 1)[0]
                assert match_rule(key) is not None, f"{f.name}: {key} has no row in trainer/plan/compat_table.py"


def test_docs_table_is_generated_from_the_module():
    doc = (REPO / "docs" / "porting.md").read_text()
    generated = doc.split("<!-- generated: python -m trainer.plan.compat --markdown -->\n", 1)[1]
    assert generated == markdown_table(), "regenerate the table below the marker in docs/porting.md"


def test_argv_keeps_flags_and_the_order_of_overrides():
    """Hydra applies overrides in order: a deletion after an addition must stay after it."""
    from trainer.plan.compat import port_argv

    argv = ["main_rl", "--cfg", "job", "+a.b=1", "data.max_target_len=9", "~a.b"]
    port_argv("rl_trainer", argv)
    assert argv == ["main_rl", "--cfg", "job", "+a.b=1", "data.max_target_length=9", "~a.b"]


def test_other_entry_points_get_the_unknown_key_checks_but_not_the_verl_table(files):
    """The table maps verl's PPO trainer keys: on the offline trainer a verl key is just unknown."""
    with pytest.raises(PlanError, match=r"unknown key model\.pth \(did you mean model\.path\?\)"):
        compose_config("offline_trainer", ["model.pth=x"])
    with pytest.raises(PlanError, match="unknown key trainer.critic_warmup"):
        compose_config("offline_trainer", ["trainer.critic_warmup=0"])
