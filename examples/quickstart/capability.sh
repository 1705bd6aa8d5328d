#!/bin/sh
# Accuracy vs capability of the quickstart's models (docs/evaluation.md): the SFT warm start against the
# GRPO policy (and a third model if given), n samples per validation question, then one comparison
# table, pass@k curves up to k = n, solve-rate histograms and the transition table.
#
#   OUT_DIR=outputs/quickstart/seed1 sh examples/quickstart/capability.sh
#   OUT_DIR=... N_SAMPLES=16 EXTRA_MODEL=ReLIFT=/path/to/hf sh examples/quickstart/capability.sh
#
# Environment: OUT_DIR (a finished `sh examples/quickstart/train.sh` output; default
# outputs/quickstart/seed1), N_SAMPLES [64], TEMPERATURE [1.0, the quickstart's validation setting],
# EXTRA_MODEL NAME=HF_FOLDER (optional third model), BATCH_SIZE prompts per chunk [50].
# Writes $OUT_DIR/eval/{sft,rl[,NAME]}/ (responses, numbers, scores), $OUT_DIR/eval/comparison.{md,csv}
# and $OUT_DIR/eval/capability/ (PNGs, capability.md). Reruns reuse finished chunks.
set -eu
repo="$(cd "$(dirname "$0")/../.." && pwd)"
case "${1:-}" in -h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
OUT_DIR="${OUT_DIR:-outputs/quickstart/seed1}"
if [ ! -d "$OUT_DIR/sft/hf" ]; then
    echo "[capability] $OUT_DIR/sft/hf not found: run sh examples/quickstart/train.sh first (or set OUT_DIR)" >&2
    exit 2
fi
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
rl_model="$(ls -d "$OUT_DIR"/rl/global_step_*/actor/huggingface 2>/dev/null | sort -t_ -k3 -n | tail -n 1)"
if [ -z "$rl_model" ]; then
    echo "[capability] no $OUT_DIR/rl/global_step_*/actor/huggingface: the RL stage has not finished" >&2
    exit 2
fi
export N_SAMPLES="${N_SAMPLES:-64}" TEMPERATURE="${TEMPERATURE:-1.0}" TOP_P=1.0 BATCH_SIZE="${BATCH_SIZE:-50}"
export MAX_PROMPT_LENGTH=32 MAX_RESPONSE_LENGTH=32 DATA_FILES="$OUT_DIR/data/val.parquet" REWARD_WORKERS=1
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" TOKENIZERS_PARALLELISM=false

evaluate() {  # name hf_folder
    echo "[capability] $1: $2"
    MODEL_PATH="$2" OUT_DIR="$OUT_DIR/eval/$1" sh "$repo/eval_scripts/eval_math.sh" trainer.device=cpu
}
evaluate sft "$OUT_DIR/sft/hf"
evaluate rl "$rl_model"
models="SFT=$OUT_DIR/eval/sft GRPO=$OUT_DIR/eval/rl"
if [ -n "${EXTRA_MODEL:-}" ]; then
    name="${EXTRA_MODEL%%=*}"
    evaluate "$name" "${EXTRA_MODEL#*=}"
    models="$models $name=$OUT_DIR/eval/$name"
fi
# shellcheck disable=SC2086  # models is a list of NAME=PATH words without spaces
sh "$repo/eval_scripts/compare.sh" $models --metric mean@n --out "$OUT_DIR/eval/comparison"
# shellcheck disable=SC2086
sh "$repo/eval_scripts/capability.sh" $models --out_dir "$OUT_DIR/eval/capability"
