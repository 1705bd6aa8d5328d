#!/bin/sh
# SimPO baseline of the REDI paper: beta 2, gamma 1, lr 5e-7 (its best), reference-free; TRL's
# optional NLL term on the chosen completion off (loss.cpo_alpha=0; set it to turn it on);
# otherwise REDI's stage-2 settings (32 pairs per step, 1 epoch, linear decay, 10% warmup).
#
#   sh examples/redi/simpo.sh                                # after sft.sh
#   sh examples/redi/simpo.sh trainer.dry_run=true           # check the config, print the plan, stop
#
# Environment: MODEL_PATH [checkpoints/relift/redi-sft/hf], TRAIN_FILES [data/redi/pairs.parquet],
# EXPERIMENT_NAME [redi-simpo], and those of _offline.sh. Extra arguments are Hydra overrides.
set -eu
case "${1:-}" in -h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
here="$(cd "$(dirname "$0")" && pwd)"
export MODEL_PATH="${MODEL_PATH:-checkpoints/relift/redi-sft/hf}"
export TRAIN_FILES="${TRAIN_FILES:-data/redi/pairs.parquet}"
export EXPERIMENT_NAME="${EXPERIMENT_NAME:-redi-simpo}"
exec sh "$here/_offline.sh" \
    data.kind=pairs loss.type=simpo loss.beta=2.0 loss.gamma=1.0 loss.cpo_alpha=0.0 \
    data.train_batch_size=32 \
    optim.lr=5e-7 \
    trainer.total_epochs=1 \
    "$@"
