#!/bin/sh
# REDI stage 2: the REDI loss (alpha 0.8) on (chosen, rejected) pairs from the stage-1 SFT model,
# the paper's settings (arXiv 2505.24850: lr 1e-6, linear decay with 10% warmup, 32 pairs per
# optimiser step, 1 epoch, AdamW weight decay 1e-4; reference-free).
#
#   sh examples/redi/redi.sh                                 # after sft.sh
#   sh examples/redi/redi.sh trainer.dry_run=true            # check the config, print the plan, stop
#
# Environment: MODEL_PATH [checkpoints/relift/redi-sft/hf], TRAIN_FILES [data/redi/pairs.parquet],
# EXPERIMENT_NAME [redi-alpha0.8], ALPHA [0.8], and those of _offline.sh. Extra arguments are Hydra overrides.
set -eu
case "${1:-}" in -h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
here="$(cd "$(dirname "$0")" && pwd)"
export MODEL_PATH="${MODEL_PATH:-checkpoints/relift/redi-sft/hf}"
export TRAIN_FILES="${TRAIN_FILES:-data/redi/pairs.parquet}"
export EXPERIMENT_NAME="${EXPERIMENT_NAME:-redi-alpha0.8}"
exec sh "$here/_offline.sh" \
    data.kind=pairs loss.type=redi loss.alpha="${ALPHA:-0.8}" \
    data.train_batch_size=32 \
    optim.lr=1e-6 \
    trainer.total_epochs=1 \
    "$@"
