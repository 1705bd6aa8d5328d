#!/bin/sh
# DPO baseline of the REDI paper: beta 0.001, lr 2e-7 (its best), reference = the stage-1 SFT model,
# otherwise REDI's stage-2 settings (32 pairs per step, 1 epoch, linear decay, 10% warmup).
#
#   sh examples/redi/dpo.sh                                  # after sft.sh
#   sh examples/redi/dpo.sh trainer.dry_run=true             # check the config, print the plan, stop
#
# Environment: MODEL_PATH [checkpoints/relift/redi-sft/hf] (also the reference), TRAIN_FILES
# [data/redi/pairs.parquet], EXPERIMENT_NAME [redi-dpo], and those of _offline.sh.
# Extra arguments are Hydra overrides.
set -eu
case "${1:-}" in -h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
here="$(cd "$(dirname "$0")" && pwd)"
export MODEL_PATH="${MODEL_PATH:-checkpoints/relift/redi-sft/hf}"
export TRAIN_FILES="${TRAIN_FILES:-data/redi/pairs.parquet}"
export EXPERIMENT_NAME="${EXPERIMENT_NAME:-redi-dpo}"
exec sh "$here/_offline.sh" \
    data.kind=pairs loss.type=dpo loss.beta=0.001 \
    data.train_batch_size=32 \
    optim.lr=2e-7 \
    trainer.total_epochs=1 \
    "$@"
