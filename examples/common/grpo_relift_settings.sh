#!/usr/bin/env bash
# GRPO with vLLM rollouts on OpenR1-style math prompts, with ReLIFT's published RL settings
# (arXiv 2506.07527; REFERENCE section 3), here without the ReLIFT fine-tuning hook: GRPO without std
# normalisation (Dr.GRPO), no PPO clip, seq-mean-token-sum-norm loss, entropy bonus 0.001, no KL and
# no reference model, lr 1e-6 constant, 128 prompts x 8 samples per step at temperature 1.0,
# responses up to 8192 tokens, mini-batches of 64 prompts (two optimiser steps per RL step).
#
# Not run directly: the recipes (math-1.5b/, math-7b/, 7b/) set the model-specific variables below
# and call this script with their own Hydra overrides followed by the user's.
#
# Environment (defaults in brackets): PYTHON [python3], MODEL_PATH (required), EXPERIMENT_NAME
# (required), TRAIN_FILES [$HOME/data/openr1/train.parquet], VAL_FILES [$HOME/data/openr1/valid.parquet],
# NNODES [1], N_GPUS_PER_NODE [8], TOTAL_EPOCHS [1], TOTAL_STEPS [derived from the data],
# LOGGER [[console,jsonl]], PROJECT_NAME [relift], CKPT_DIR [checkpoints/$PROJECT_NAME/$EXPERIMENT_NAME],
# ROLLOUT_TP [1] (vLLM tensor parallel), GPU_MEM_UTIL [0.6], ACTOR_TOKENS_PER_GPU [24576] (token
# budget of one training forward), LOGPROB_TOKENS_PER_GPU [2 x ACTOR_TOKENS_PER_GPU].
# Arguments are Hydra overrides; they come last, so they win.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"

: "${MODEL_PATH:?set MODEL_PATH (a recipe does this)}"
: "${EXPERIMENT_NAME:?set EXPERIMENT_NAME (a recipe does this)}"
PYTHON="${PYTHON:-python3}"
TRAIN_FILES="${TRAIN_FILES:-$HOME/data/openr1/train.parquet}"
VAL_FILES="${VAL_FILES:-$HOME/data/openr1/valid.parquet}"
PROJECT_NAME="${PROJECT_NAME:-relift}"
CKPT_DIR="${CKPT_DIR:-checkpoints/$PROJECT_NAME/$EXPERIMENT_NAME}"
ACTOR_TOKENS_PER_GPU="${ACTOR_TOKENS_PER_GPU:-24576}"

exec "$PYTHON" -m trainer.main_rl \
    data.train_files="$TRAIN_FILES" \
    data.val_files="$VAL_FILES" \
    data.max_prompt_length=1024 \
    data.max_response_length=8192 \
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
    actor_rollout_ref.actor.optim.lr=1e-6 \
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
    trainer.project_name="$PROJECT_NAME" \
    trainer.experiment_name="$EXPERIMENT_NAME" \
    trainer.logger="${LOGGER:-[console,jsonl]}" \
    trainer.nnodes="${NNODES:-1}" \
    trainer.n_gpus_per_node="${N_GPUS_PER_NODE:-8}" \
    trainer.device=cuda \
    trainer.total_epochs="${TOTAL_EPOCHS:-1}" \
    trainer.total_training_steps="${TOTAL_STEPS:-null}" \
    trainer.save_freq=50 \
    trainer.test_freq=10 \
    trainer.val_before_train=true \
    trainer.default_local_dir="$CKPT_DIR" \
    "$@"
