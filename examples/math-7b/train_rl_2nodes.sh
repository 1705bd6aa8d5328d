#!/usr/bin/env bash
# The math-7b RL-only baseline (train_rl.sh) on two nodes x 8 GPUs, as train_2nodes.sh runs ReLIFT.
#   head node, after ray_start.sh / ray_connect.sh:   sh examples/math-7b/train_rl_2nodes.sh [hydra overrides]
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,/^if \[/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;; esac
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export RELIFT=0 EXPERIMENT_NAME="${EXPERIMENT_NAME:-rl-math-7b-2nodes}"
exec bash "$here/../common/on_nodes.sh" "$here/train.sh" "$@"
