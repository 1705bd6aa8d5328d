#!/usr/bin/env bash
# The RL-only baseline of examples/7b/train.sh: the same settings, model, data and reward, without
# ReLIFT's fine-tuning hook (relift.enable=false).
#
#   sh examples/7b/train_rl.sh [hydra overrides]
#   sh examples/7b/train_rl.sh trainer.dry_run=true trainer.check_devices=false
#
# Environment: as train.sh; EXPERIMENT_NAME defaults to rl-7b.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,/^if \[/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;; esac
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export RELIFT=0 EXPERIMENT_NAME="${EXPERIMENT_NAME:-rl-7b}"
exec bash "$here/train.sh" "$@"
