#!/usr/bin/env bash
# The 7b GRPO recipe (Qwen2.5-7B base; train.sh beside this file) on two nodes x 8 GPUs: world size 16, the same
# global batch (128 prompts x 8 samples), so 64 sequences per GPU per step instead of 128.
#
# Bring the cluster up first, then run this on the head node:
#   head node:     bash examples/ray_start.sh                       (prints the head's ip:port)
#   other node:    RAY_HEAD_ADDRESS=<ip:port> bash examples/ray_connect.sh   (see docs/multinode.md)
#   head node:     bash examples/7b/train_2nodes.sh [hydra overrides]
#
# It joins the running cluster (RAY_ADDRESS, or the `ray start` cluster on this machine), waits up to
# WAIT_NODES_TIMEOUT seconds [600] until NNODES [2] nodes are alive, then runs train.sh with
# trainer.nnodes=NNODES. With trainer.dry_run=true among the arguments it skips the wait (no Ray).
# RAY_AUTH_MODE defaults to token, as in ray_start.sh: the driver must use the cluster's auth mode.
# Same environment variables as train.sh (PYTHON, MODEL_PATH, TRAIN_FILES, VAL_FILES, ...).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export NNODES="${NNODES:-2}"
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"
export EXPERIMENT_NAME="${EXPERIMENT_NAME:-grpo-7b-2nodes}"
bash "$here/../wait_for_nodes.sh" "$@"
exec bash "$here/train.sh" "$@"
