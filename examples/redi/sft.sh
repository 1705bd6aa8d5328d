#!/bin/sh
# REDI stage 1: SFT of Qwen2.5-Math-1.5B on the positive teacher traces, the paper's settings
# (arXiv 2505.24850: lr 5e-5, 5 epochs, batch 128, linear decay with 10% warmup, AdamW weight decay
# 1e-4; completion-only loss; context widened to 32768 positions, rope_theta 300000).
#
#   python -m dataset.prepare_redi --hub-id open-r1/OpenR1-Math-Raw --tokenizer Qwen/Qwen2.5-Math-1.5B --out data/redi
#   sh examples/redi/sft.sh                                  # -> checkpoints/relift/redi-sft/hf
#   sh examples/redi/sft.sh trainer.dry_run=true             # check the config, print the plan, stop
#
# Environment: MODEL_PATH [Qwen/Qwen2.5-Math-1.5B], TRAIN_FILES [data/redi/sft.parquet],
# EXPERIMENT_NAME [redi-sft], and those of _offline.sh (PYTHON, NNODES, N_GPUS_PER_NODE, MICRO_BATCH).
# Extra arguments are Hydra overrides.
set -eu
case "${1:-}" in -h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
here="$(cd "$(dirname "$0")" && pwd)"
export MODEL_PATH="${MODEL_PATH:-Qwen/Qwen2.5-Math-1.5B}"
export TRAIN_FILES="${TRAIN_FILES:-data/redi/sft.parquet}"
export EXPERIMENT_NAME="${EXPERIMENT_NAME:-redi-sft}"
exec sh "$here/_offline.sh" \
    data.kind=sft loss.type=sft \
    data.train_batch_size=128 \
    optim.lr=5e-5 \
    trainer.total_epochs=5 \
    "$@"
