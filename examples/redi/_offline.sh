#!/bin/sh
# Shared launcher of the REDI recipes (sft.sh, redi.sh, dpo.sh, simpo.sh): the settings every stage
# shares, then the recipe's overrides, then the user's (last wins). Not run directly.
#
# The model changes REDI made for long traces (the REDI repo's README: Qwen2.5-Math-1.5B's config
# modified to max_position_embeddings 32768 and rope_theta 300000; the model ships with 4096 and
# 10000) are applied through model.override_config. Sequences: prompt <= 800 and completion <= 19,000
# tokens (dataset/prepare_redi.py filters the data so), so data.max_length 20480 holds the chat
# template, end-of-turn and EOS too; longer rows are dropped (truncation=filter), never cut.
#
# Environment: PYTHON [$RELIFT_VENV/bin/python, else <repo>/.venv/bin/python], NNODES [1],
# N_GPUS_PER_NODE [8], MICRO_BATCH [1] (examples per forward per GPU), LOGGER [[console,jsonl]],
# PROJECT_NAME [relift], and from the recipe: EXPERIMENT_NAME, MODEL_PATH, TRAIN_FILES.
set -eu
case "${1:-}" in -h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
repo="$(cd "$(dirname "$0")/../.." && pwd)"
. "$repo/scripts/find_python.sh"
relift_find_python redi
: "${EXPERIMENT_NAME:?set by the recipe}"
: "${MODEL_PATH:?set by the recipe}"
: "${TRAIN_FILES:?set by the recipe}"
PROJECT_NAME="${PROJECT_NAME:-relift}"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" -m trainer.main_offline \
    data.train_files="$TRAIN_FILES" \
    data.max_length=20480 \
    data.truncation=filter \
    data.micro_batch_size_per_gpu="${MICRO_BATCH:-1}" \
    model.path="$MODEL_PATH" \
    model.enable_gradient_checkpointing=true \
    model.fsdp_config.mixed_precision=bf16 \
    ++model.override_config.max_position_embeddings=32768 \
    ++model.override_config.rope_theta=300000.0 \
    optim.lr_scheduler_type=linear \
    optim.lr_warmup_steps=-1 \
    optim.lr_warmup_steps_ratio=0.1 \
    optim.weight_decay=1e-4 \
    trainer.nnodes="${NNODES:-1}" \
    trainer.n_gpus_per_node="${N_GPUS_PER_NODE:-8}" \
    trainer.device=cuda \
    trainer.project_name="$PROJECT_NAME" \
    trainer.experiment_name="$EXPERIMENT_NAME" \
    trainer.default_local_dir="${CKPT_DIR:-checkpoints/$PROJECT_NAME/$EXPERIMENT_NAME}" \
    trainer.logger="${LOGGER:-[console,jsonl]}" \
    trainer.export_hf=true \
    "$@"
