#!/usr/bin/env bash
# GRPO with ReLIFT's published RL settings (see ../common/grpo_relift_settings.sh) on Qwen/Qwen2.5-Math-7B,
# one node of 8 GPUs, vLLM tensor parallel 2.
#
#   bash examples/math-7b/train.sh                          # train
#   bash examples/math-7b/train.sh trainer.dry_run=true     # check the config, print the plan, stop
#   bash examples/math-7b/train.sh trainer.dry_run=true trainer.check_devices=false   # ... on a CPU box
#
# Environment: MODEL_PATH [Qwen/Qwen2.5-Math-7B], EXPERIMENT_NAME [grpo-math-7b], and the variables listed in
# ../common/grpo_relift_settings.sh (PYTHON, TRAIN_FILES, VAL_FILES, NNODES, N_GPUS_PER_NODE, ...).
# Extra arguments are Hydra overrides.
#
# Qwen2.5-Math models ship with a 4096-token context (rope_theta 10000); like LUFFY/ReLIFT we widen
# it to 16384 positions with rope_theta 40000 through actor_rollout_ref.model.override_config.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export MODEL_PATH="${MODEL_PATH:-Qwen/Qwen2.5-Math-7B}"
export EXPERIMENT_NAME="${EXPERIMENT_NAME:-grpo-math-7b}"
export ROLLOUT_TP="${ROLLOUT_TP:-2}" GPU_MEM_UTIL="${GPU_MEM_UTIL:-0.5}" ACTOR_TOKENS_PER_GPU="${ACTOR_TOKENS_PER_GPU:-16384}"
exec bash "$here/../common/grpo_relift_settings.sh" \
    ++actor_rollout_ref.model.override_config.max_position_embeddings=16384 \
    ++actor_rollout_ref.model.override_config.rope_theta=40000 \
    "$@"
