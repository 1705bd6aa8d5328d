#!/bin/sh
# Knights and knaves: GRPO on Qwen2.5-7B-Instruct-1M with the seed's two phases (Logic-RL reproduction,
# github.com/wutong4012/slm_rl experiments/run_logicRL_4gpus_phase{1,2}.sh): 5-person puzzles, 128 prompts
# per step, mini-batches of 32 prompts, lr 1e-6, prompts <= 512 and responses <= 2048 tokens, KL loss
# 0.001 (low_var_kl), 4 GPUs. Phase 1: 100 steps, n 8 at temperature 1.0. Phase 2: resumes phase 1's
# step-100 checkpoint and runs to step 380 with n 16 at temperature 1.3. The seed reports 0.89 average
# over 2..8 people at step 380 (docs/kk.md; evaluate with examples/kk/eval.sh). Checkpoints carry a
# transformers copy: $CKPT_DIR/global_step_380/actor/huggingface is the teacher of distill_then_rl.sh.
#
#   sh examples/kk/grpo_7b.sh                          # both phases
#   PHASE=2 sh examples/kk/grpo_7b.sh                  # phase 2 only (phase 1's checkpoint must exist)
#   sh examples/kk/grpo_7b.sh trainer.dry_run=true trainer.check_devices=false   # plan both, on a CPU box
#
# Data: python -m dataset.kk convert --input <K-and-K files> --out ~/data/kk/instruct (or generate).
# Environment: MODEL_PATH [Qwen/Qwen2.5-7B-Instruct-1M], DATA_DIR [~/data/kk/instruct],
# TRAIN_FILES [$DATA_DIR/5ppl/train.parquet], VAL_FILES [$DATA_DIR/5ppl/test.parquet], PHASE [all|1|2],
# EXPERIMENT_NAME [kk-grpo-7b], CKPT_DIR [checkpoints/kk/$EXPERIMENT_NAME], N_GPUS_PER_NODE [4],
# PYTHON / RELIFT_VENV. Extra arguments are Hydra overrides for both phases.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
kk_help "$0" "$@"
PY=$(kk_python)

MODEL_PATH="${MODEL_PATH:-Qwen/Qwen2.5-7B-Instruct-1M}"
DATA_DIR="${DATA_DIR:-$HOME/data/kk/instruct}"
TRAIN_FILES="${TRAIN_FILES:-$DATA_DIR/5ppl/train.parquet}"
VAL_FILES="${VAL_FILES:-$DATA_DIR/5ppl/test.parquet}"
EXPERIMENT_NAME="${EXPERIMENT_NAME:-kk-grpo-7b}"
CKPT_DIR="${CKPT_DIR:-checkpoints/kk/$EXPERIMENT_NAME}"
PHASE="${PHASE:-all}"

rl() {
    "$PY" -m trainer.main_rl \
        data.train_files="$TRAIN_FILES" data.val_files="$VAL_FILES" \
        data.train_batch_size=128 data.max_prompt_length=512 data.max_response_length=2048 \
        actor_rollout_ref.model.path="$MODEL_PATH" \
        actor_rollout_ref.model.enable_gradient_checkpointing=true \
        actor_rollout_ref.actor.optim.lr=1e-6 \
        actor_rollout_ref.actor.ppo_mini_batch_size=32 \
        actor_rollout_ref.actor.use_dynamic_bsz=true actor_rollout_ref.actor.ppo_max_token_len_per_gpu=6000 \
        actor_rollout_ref.actor.use_kl_loss=true actor_rollout_ref.actor.kl_loss_coef=0.001 \
        actor_rollout_ref.actor.kl_loss_type=low_var_kl \
        actor_rollout_ref.actor.fsdp_config.mixed_precision=bf16 \
        'actor_rollout_ref.actor.checkpoint.save_contents=[model,optimizer,extra,hf_model]' \
        actor_rollout_ref.rollout.name=vllm actor_rollout_ref.rollout.tensor_model_parallel_size=1 \
        actor_rollout_ref.rollout.gpu_memory_utilization=0.6 actor_rollout_ref.rollout.enforce_eager=true \
        actor_rollout_ref.rollout.free_cache_engine=false actor_rollout_ref.rollout.max_num_batched_tokens=8192 \
        actor_rollout_ref.ref.fsdp_config.param_offload=true \
        algorithm.adv_estimator=grpo algorithm.kl_ctrl.kl_coef=0.001 \
        trainer.project_name=kk trainer.experiment_name="$EXPERIMENT_NAME" trainer.default_local_dir="$CKPT_DIR" \
        trainer.device=cuda trainer.nnodes=1 trainer.n_gpus_per_node="${N_GPUS_PER_NODE:-4}" \
        trainer.save_freq=20 trainer.test_freq=10 trainer.total_epochs=1000 \
        'trainer.logger=[console,jsonl]' \
        "$@"
}

if [ "$PHASE" = all ] || [ "$PHASE" = 1 ]; then
    kk_say "phase 1: steps 1-100, n 8, temperature 1.0 -> $CKPT_DIR"
    rl actor_rollout_ref.rollout.n=8 actor_rollout_ref.rollout.temperature=1.0 \
        trainer.total_training_steps=100 trainer.resume_mode=disable "$@"
fi
if [ "$PHASE" = all ] || [ "$PHASE" = 2 ]; then
    # resume_mode=auto: the newest checkpoint in CKPT_DIR (phase 1's step 100, or a later phase-2 one
    # when phase 2 itself is restarted); the seed pointed at global_step_100 explicitly.
    # resume_force: phase 2 changes n and the temperature on purpose (a resume refuses such changes otherwise)
    if ! kk_is_dry "$@" && [ ! -d "$CKPT_DIR/global_step_100" ]; then
        echo "phase 2 resumes phase 1: $CKPT_DIR/global_step_100 not found (run PHASE=1 first)" >&2
        exit 2
    fi
    kk_say "phase 2: resume from $CKPT_DIR (step 100), to step 380, n 16, temperature 1.3"
    rl actor_rollout_ref.rollout.n=16 actor_rollout_ref.rollout.temperature=1.3 \
        trainer.total_training_steps=380 trainer.resume_mode=auto trainer.resume_force=true "$@"
fi
