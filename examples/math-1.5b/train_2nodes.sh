#!/usr/bin/env bash
# The math-1.5b ReLIFT recipe (train.sh beside this file) on two nodes x 8 GPUs: world size 16, the same global
# batch (128 prompts x 8 samples), so 64 sequences per GPU per step instead of 128.
#   head node, after ray_start.sh / ray_connect.sh:   sh examples/math-1.5b/train_2nodes.sh [hydra overrides]
# How the cluster is brought up and what the script waits for: examples/common/on_nodes.sh.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,/^if \[/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;; esac
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export EXPERIMENT_NAME="${EXPERIMENT_NAME:-relift-math-1.5b-2nodes}"
exec bash "$here/../common/on_nodes.sh" "$here/train.sh" "$@"
