#!/bin/sh
# ReLIFT's evaluation command (its README: `sh ./eval_scripts/inference.sh`), done by relift's own
# evaluation (eval_scripts/eval_math.sh with PROTOCOL=relift: trainer.main_generation, then
# trainer.main_eval): each model answers ReLIFT's validation set once per row at temperature 0.6,
# top_p 1.0, up to 8192 tokens, with its chat template and without the system message (ReLIFT's
# generate_vllm.py: --template own --remove_system True), then is scored per benchmark; at the end
# one table compares the models (eval_scripts/compare.sh).
#
#   sh ./eval_scripts/inference.sh                                  # ReLIFT's three released models
#   MODELS="mine=/path/to/hf other=/path/2" sh ./eval_scripts/inference.sh    # your checkpoints
#   sh ./eval_scripts/inference.sh trainer.dry_run=true             # plan the generation only
#
# Environment (defaults in brackets):
#   MODELS          space-separated NAME=PATH (local folder or hub id) [relift-7B=RoadQAQ/ReLIFT-Qwen2.5-7B-Zero
#                   relift-math-1.5B=RoadQAQ/ReLIFT-Qwen2.5-Math-1.5B-Zero
#                   relift-math-7b=RoadQAQ/ReLIFT-Qwen2.5-Math-7B-Zero], as ReLIFT's MODEL_PATHS/MODEL_NAMES
#   DATA            the validation parquet [$RELIFT_VALID, else <repo>/data/relift/valid.parquet]; ReLIFT's
#                   script reads its dataset/valid.all.parquet (pass DATA=... to use that file)
#   OUTPUT_DIR      [results]: <OUTPUT_DIR>/<NAME>/ per model (responses, scores, numbers), as ReLIFT's
#                   ./results/<NAME>.jsonl; <OUTPUT_DIR>/comparison.{md,csv}
#   REMOVE_SYSTEM   1 = drop the prompts' system message (ReLIFT's default) | 0 = keep it [1]
#   and those of eval_scripts/eval_math.sh (N_SAMPLES, TEMPERATURE, ROLLOUT, N_GPUS, LIMIT, ...; --help there).
# Extra arguments are Hydra overrides for trainer.main_generation. Python: scripts/find_python.sh.
set -eu
case "${1:-}" in -h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
repo="$(cd "$(dirname "$0")/.." && pwd)"
. "$repo/scripts/find_python.sh"
relift_find_python inference
export PYTHON

MODELS="${MODELS:-relift-7B=RoadQAQ/ReLIFT-Qwen2.5-7B-Zero relift-math-1.5B=RoadQAQ/ReLIFT-Qwen2.5-Math-1.5B-Zero relift-math-7b=RoadQAQ/ReLIFT-Qwen2.5-Math-7B-Zero}"
DATA="${DATA:-${RELIFT_VALID:-$repo/data/relift/valid.parquet}}"
OUTPUT_DIR="${OUTPUT_DIR:-results}"
if [ ! -f "$DATA" ]; then
    echo "[inference] validation data not found: $DATA; set DATA (or RELIFT_VALID) to ReLIFT's" \
         "dataset/valid.parquet (or valid.all.parquet)" >&2
    exit 2
fi
mkdir -p "$OUTPUT_DIR"
OUTPUT_DIR="$(cd "$OUTPUT_DIR" && pwd)"
if [ "${REMOVE_SYSTEM:-1}" = 1 ]; then
    data_files="$OUTPUT_DIR/data/$(basename "$DATA" .parquet).nosystem.parquet"
    "$PYTHON" "$repo/eval_scripts/drop_system.py" "$DATA" "$data_files"
else
    data_files="$DATA"
fi

dry=0
for a in "$@"; do case "$a" in trainer.dry_run=true|trainer.dry_run=True) dry=1 ;; esac; done
results=""
for pair in $MODELS; do
    case "$pair" in
        *=*) name="${pair%%=*}"; path="${pair#*=}" ;;
        *) echo "[inference] MODELS entries are NAME=PATH, got '$pair'" >&2; exit 2 ;;
    esac
    echo "[inference] running inference for $name ($path) ..."
    PROTOCOL=relift DATA_FILES="$data_files" MODEL_PATH="$path" OUT_DIR="$OUTPUT_DIR/$name" \
        sh "$repo/eval_scripts/eval_math.sh" "$@"
    results="$results $name=$OUTPUT_DIR/$name"
done
if [ "$dry" = 0 ]; then
    # shellcheck disable=SC2086  # results is a list of NAME=PATH words
    sh "$repo/eval_scripts/compare.sh" $results --out "$OUTPUT_DIR/comparison"
fi
