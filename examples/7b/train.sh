#!/usr/bin/env bash
# ReLIFT on RoadQAQ/Qwen2.5-7B-think with the paper's settings (../common/grpo_relift_settings.sh), one node of
# 8 GPUs, vLLM tensor parallel 2. train_rl.sh beside this file is the RL-only baseline, everything else equal.
#
#   sh examples/7b/train.sh                          # train
#   sh examples/7b/train.sh trainer.dry_run=true     # check the config, print the plan, stop
#   sh examples/7b/train.sh trainer.dry_run=true trainer.check_devices=false   # ... on a CPU box
#
# Model: the "-think" variant (chat template prefills <think>\n), from the hub or made locally:
#   python -m dataset.make_think_model <Qwen/Qwen2.5-7B folder> <out folder>
# Environment: MODEL_PATH [$MODEL_ROOT_PATH/Qwen2.5-7B-think when MODEL_ROOT_PATH is set
# (ReLIFT's variable), else RoadQAQ/Qwen2.5-7B-think], EXPERIMENT_NAME [relift-7b], RELIFT [1; 0 = RL only],
# and the variables listed in ../common/grpo_relift_settings.sh (PYTHON, TRAIN_FILES, VAL_FILES, NNODES, ...).
# Extra arguments are Hydra overrides.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,/^if \[/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;; esac
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ -z "${MODEL_PATH:-}" ] && [ -n "${MODEL_ROOT_PATH:-}" ]; then MODEL_PATH="$MODEL_ROOT_PATH/Qwen2.5-7B-think"; fi
export MODEL_PATH="${MODEL_PATH:-RoadQAQ/Qwen2.5-7B-think}"
export RELIFT="${RELIFT:-1}"
export EXPERIMENT_NAME="${EXPERIMENT_NAME:-relift-7b}"
export ROLLOUT_TP="${ROLLOUT_TP:-2}" GPU_MEM_UTIL="${GPU_MEM_UTIL:-0.5}" ACTOR_TOKENS_PER_GPU="${ACTOR_TOKENS_PER_GPU:-16384}"
exec bash "$here/../common/grpo_relift_settings.sh" \
    "$@"
