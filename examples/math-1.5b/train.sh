#!/usr/bin/env bash
# ReLIFT on RoadQAQ/Qwen2.5-Math-1.5B-16k-think with the paper's settings (../common/grpo_relift_settings.sh), one node of
# 8 GPUs, vLLM tensor parallel 1. train_rl.sh beside this file is the RL-only baseline, everything else equal.
#
#   sh examples/math-1.5b/train.sh                          # train
#   sh examples/math-1.5b/train.sh trainer.dry_run=true     # check the config, print the plan, stop
#   sh examples/math-1.5b/train.sh trainer.dry_run=true trainer.check_devices=false   # ... on a CPU box
#
# Model: the "-think" variant (chat template prefills <think>\n), from the hub or made locally:
#   python -m dataset.make_think_model <Qwen/Qwen2.5-Math-1.5B folder> <out folder> --context-16k
# Environment: MODEL_PATH [$MODEL_ROOT_PATH/Qwen2.5-Math-1.5B-16k-think when MODEL_ROOT_PATH is set
# (ReLIFT's variable), else RoadQAQ/Qwen2.5-Math-1.5B-16k-think], EXPERIMENT_NAME [relift-math-1.5b], RELIFT [1; 0 = RL only],
# and the variables listed in ../common/grpo_relift_settings.sh (PYTHON, TRAIN_FILES, VAL_FILES, NNODES, ...).
# Extra arguments are Hydra overrides.
#
# Qwen2.5-Math ships with 4096 positions (rope_theta 10000); the -16k-think variant has LUFFY's 16384 /
# 40000 in its config.json, and override_config sets the same values so a plain -think model works too.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,/^if \[/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;; esac
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ -z "${MODEL_PATH:-}" ] && [ -n "${MODEL_ROOT_PATH:-}" ]; then MODEL_PATH="$MODEL_ROOT_PATH/Qwen2.5-Math-1.5B-16k-think"; fi
export MODEL_PATH="${MODEL_PATH:-RoadQAQ/Qwen2.5-Math-1.5B-16k-think}"
export RELIFT="${RELIFT:-1}"
export EXPERIMENT_NAME="${EXPERIMENT_NAME:-relift-math-1.5b}"
export ROLLOUT_TP="${ROLLOUT_TP:-1}" GPU_MEM_UTIL="${GPU_MEM_UTIL:-0.6}" ACTOR_TOKENS_PER_GPU="${ACTOR_TOKENS_PER_GPU:-24576}"
exec bash "$here/../common/grpo_relift_settings.sh" \
    ++actor_rollout_ref.model.override_config.max_position_embeddings=16384 \
    ++actor_rollout_ref.model.override_config.rope_theta=40000 \
    "$@"
