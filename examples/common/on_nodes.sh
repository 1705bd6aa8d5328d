#!/usr/bin/env bash
# Run a single-node recipe on NNODES [2] nodes of a running Ray cluster:
#   bash examples/common/on_nodes.sh <recipe/train.sh> [hydra overrides]
# (each recipe's train_2nodes.sh calls this with its own train.sh and experiment name).
#
# Bring the cluster up first, then run the recipe's train_2nodes.sh on the head node:
#   head node:     bash examples/ray_start.sh                       (prints the head's ip:port)
#   other node:    RAY_HEAD_ADDRESS=<ip:port> bash examples/ray_connect.sh   (see docs/multinode.md)
#   head node:     bash examples/<recipe>/train_2nodes.sh [hydra overrides]
#
# It joins the running cluster (RAY_ADDRESS, or the `ray start` cluster on this machine), waits up to
# WAIT_NODES_TIMEOUT seconds [600] until NNODES nodes are alive, then runs the recipe with
# trainer.nnodes=NNODES: the same global batch over twice the GPUs. With trainer.dry_run=true among
# the arguments it skips the wait (no Ray). RAY_AUTH_MODE defaults to token, as in ray_start.sh: the
# driver must use the cluster's auth mode. Same environment variables as the recipe (PYTHON,
# MODEL_PATH, TRAIN_FILES, VAL_FILES, ...).
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,/^if \[/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;; esac
if [ $# -lt 1 ] || [ ! -f "$1" ]; then
    echo "usage: bash examples/common/on_nodes.sh <recipe/train.sh> [hydra overrides]" >&2
    exit 2
fi
recipe="$1"; shift
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export NNODES="${NNODES:-2}"
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"
bash "$here/../wait_for_nodes.sh" "$@"
exec bash "$recipe" "$@"
