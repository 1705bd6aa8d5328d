#!/usr/bin/env bash
# ReLIFT's published settings (arXiv 2506.07527; REFERENCE.md section 3), shared by the ReLIFT recipes
# (examples/*/train.sh, RELIFT=1) and their RL-only baselines (examples/*/train_rl.sh, RELIFT=0), so the
# two differ only in the fine-tuning hook.
#
# RL phase: on-policy GRPO without std normalisation (Dr.GRPO), no PPO clip (loss_remove_clip), the
# seq-mean-token-sum-norm loss, entropy bonus 0.001, no KL and no reference model, lr 1e-6 constant,
# 128 prompts x 8 samples per step at temperature 1.0, responses up to 8192 tokens, mini-batches of 64
# prompts (two optimiser steps per RL step), 3 epochs; validation n=1 at temperature 0.6, top_p 1.0.
# Reward: ReLIFT's reward_impl_version=3 (relift/rewards/math_v3.py: <think> and </think> required, the
# answer graded between the first and the second </think>) for every data_source.
# Gradient clipping 0.7: the value in the public ReLIFT scripts; we found no other value stated in the
# paper (REFERENCE.md records the scripts' 0.7 only), so there is no paper/script disagreement to settle
# here. Where they do disagree (none known for these keys), the paper wins.
#
# ReLIFT hook (RELIFT=1): prompts that no rollout solved (relift.max_acc=0) enter a FIFO buffer with
# their demonstration (the data's `target` column); every 128 of them get one fine-tuning step (token-mean
# NLL - 0.001 x entropy) with its own AdamW at lr 1e-6 (relift.sft_optimizer=separate, as the paper: weight
# decay 0.01 = actor_rollout_ref.actor.optim.weight_decay, no schedule; it doubles the optimiser memory).
#
# Not run directly: the recipes set the model-specific variables below and call this script with their
# own Hydra overrides followed by the user's.
#
# Environment (defaults in brackets): PYTHON [$RELIFT_VENV/bin/python, else <repo>/.venv/bin/python],
# MODEL_PATH (required), EXPERIMENT_NAME (required), RELIFT [1], TRAIN_FILES [$HOME/data/openr1/train.parquet, else
# <repo>/dataset/train_data/openr1.parquet or <repo>/dataset/openr1.parquet when one exists (ReLIFT's layout)],
# VAL_FILES [$HOME/data/openr1/valid.parquet, else <repo>/dataset/valid.parquet when it exists], NNODES [1], N_GPUS_PER_NODE [8], TOTAL_EPOCHS [3],
# TOTAL_STEPS [derived from the data], LOGGER [[console,jsonl]], PROJECT_NAME [relift],
# CKPT_DIR [checkpoints/$PROJECT_NAME/$EXPERIMENT_NAME], ROLLOUT_TP [1] (vLLM tensor parallel),
# GPU_MEM_UTIL [0.6], ACTOR_TOKENS_PER_GPU [24576] (token budget of one training forward),
# LOGPROB_TOKENS_PER_GPU [2 x ACTOR_TOKENS_PER_GPU]. Arguments are Hydra overrides; they come last, so they win.
# Data: python -m dataset.prepare_relift --out $HOME/data/openr1/train.parquet (training set, with targets);
# validation: ReLIFT's dataset/valid.parquet. Model: a "-think" checkpoint (python -m dataset.make_think_model).
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,/^if \[/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;; esac
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"

: "${MODEL_PATH:?set MODEL_PATH (a recipe does this)}"
: "${EXPERIMENT_NAME:?set EXPERIMENT_NAME (a recipe does this)}"
. "$repo/scripts/find_python.sh"
relift_find_python relift
# the first default that exists: ours, then ReLIFT's layout (`cd dataset && python prepare_train.py`
# writes dataset/train_data/openr1.parquet; ReLIFT's scripts read dataset/openr1.parquet, dataset/valid.parquet)
first_file() { for f in "$@"; do if [ -f "$f" ]; then echo "$f"; return; fi; done; echo "$1"; }
TRAIN_FILES="${TRAIN_FILES:-$(first_file "$HOME/data/openr1/train.parquet" "$repo/dataset/train_data/openr1.parquet" \
                                          "$repo/dataset/openr1.parquet")}"
VAL_FILES="${VAL_FILES:-$(first_file "$HOME/data/openr1/valid.parquet" "$repo/dataset/valid.parquet")}"
PROJECT_NAME="${PROJECT_NAME:-relift}"
CKPT_DIR="${CKPT_DIR:-checkpoints/$PROJECT_NAME/$EXPERIMENT_NAME}"
ACTOR_TOKENS_PER_GPU="${ACTOR_TOKENS_PER_GPU:-24576}"

hook=(relift.enable=false)
if [ "${RELIFT:-1}" = "1" ]; then
    hook=(
        relift.enable=true
        relift.max_acc=0.0
        relift.sft_batch_size=128
        relift.entropy_coeff=0.001
        relift.loss_agg_mode=token-mean
        relift.lr=1e-6
        relift.sft_optimizer=separate
        relift.buffer_order=fifo
    )
fi

exec "$PYTHON" -m trainer.main_rl \
    data.train_files="$TRAIN_FILES" \
    data.val_files="$VAL_FILES" \
    data.max_prompt_length=1024 \
    data.max_response_length=8192 \
    data.max_target_length=8192 \
    data.target_key=target \
    data.train_batch_size=128 \
    data.truncation=filter \
    actor_rollout_ref.model.path="$MODEL_PATH" \
    actor_rollout_ref.model.enable_gradient_checkpointing=true \
    actor_rollout_ref.actor.ppo_mini_batch_size=64 \
    actor_rollout_ref.actor.use_dynamic_bsz=true \
    actor_rollout_ref.actor.ppo_max_token_len_per_gpu="$ACTOR_TOKENS_PER_GPU" \
    actor_rollout_ref.actor.ppo_epochs=1 \
    actor_rollout_ref.actor.loss_remove_clip=true \
    actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-sum-norm \
    actor_rollout_ref.actor.entropy_coeff=0.001 \
    actor_rollout_ref.actor.use_kl_loss=false \
    actor_rollout_ref.actor.grad_clip=0.7 \
    actor_rollout_ref.actor.optim.lr=1e-6 \
    actor_rollout_ref.actor.optim.weight_decay=0.01 \
    actor_rollout_ref.actor.optim.lr_scheduler_type=constant \
    actor_rollout_ref.actor.optim.lr_warmup_steps=0 \
    actor_rollout_ref.actor.fsdp_config.mixed_precision=bf16 \
    actor_rollout_ref.rollout.name=vllm \
    actor_rollout_ref.rollout.n=8 \
    actor_rollout_ref.rollout.temperature=1.0 \
    actor_rollout_ref.rollout.top_p=1.0 \
    actor_rollout_ref.rollout.tensor_model_parallel_size="${ROLLOUT_TP:-1}" \
    actor_rollout_ref.rollout.gpu_memory_utilization="${GPU_MEM_UTIL:-0.6}" \
    actor_rollout_ref.rollout.max_num_batched_tokens=16384 \
    actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu="${LOGPROB_TOKENS_PER_GPU:-$((2 * ACTOR_TOKENS_PER_GPU))}" \
    actor_rollout_ref.rollout.val_kwargs.do_sample=true \
    actor_rollout_ref.rollout.val_kwargs.temperature=0.6 \
    actor_rollout_ref.rollout.val_kwargs.top_p=1.0 \
    actor_rollout_ref.rollout.val_kwargs.n=1 \
    algorithm.adv_estimator=grpo \
    algorithm.norm_adv_by_std_in_grpo=false \
    algorithm.use_kl_in_reward=false \
    reward.custom_reward_function.path="$repo/relift/rewards/math_v3.py" \
    reward.custom_reward_function.name=compute_score \
    "${hook[@]}" \
    trainer.project_name="$PROJECT_NAME" \
    trainer.experiment_name="$EXPERIMENT_NAME" \
    trainer.logger="${LOGGER:-[console,jsonl]}" \
    trainer.nnodes="${NNODES:-1}" \
    trainer.n_gpus_per_node="${N_GPUS_PER_NODE:-8}" \
    trainer.device=cuda \
    trainer.total_epochs="${TOTAL_EPOCHS:-3}" \
    trainer.total_training_steps="${TOTAL_STEPS:-null}" \
    trainer.save_freq=50 \
    trainer.test_freq=10 \
    trainer.val_before_train=true \
    trainer.default_local_dir="$CKPT_DIR" \
    "$@"
