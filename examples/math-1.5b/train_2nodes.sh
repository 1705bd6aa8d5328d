#!/usr/bin/env bash
# The math-1.5b GRPO recipe (train.sh beside this file) on two nodes x 8 GPUs: world size 16, the same global
# batch (128 prompts x 8 samples), so 64 sequences per GPU per step instead of 128.
#   head node, after ray_start.sh / ray_connect.sh:   bash examples/math-1.5b/train_2nodes.sh [hydra overrides]
# How the cluster is brought up and what the script waits for: examples/common/on_nodes.sh.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export EXPERIMENT_NAME="${EXPERIMENT_NAME:-grpo-math-1.5b-2nodes}"
exec bash "$here/../common/on_nodes.sh" "$here/train.sh" "$@"
