#!/usr/bin/env bash
# Evaluate a model: prepare the benchmark parquet, sample N answers per prompt, score them, print a
# pass@k table per benchmark (mean@n, pass@1, 2, 4, ..., n, maj@n); optionally the capability plots.
#
#   MODEL_PATH=/path/to/model sh eval_scripts/eval_math.sh [hydra overrides for main_generation ...]
#   PROTOCOL=redi MODEL_PATH=... sh eval_scripts/eval_math.sh      # a seed's protocol (see below)
#   sh eval_scripts/eval_math.sh --help                             # this text
#
# Environment (defaults in brackets):
#   MODEL_PATH           local HF checkpoint or hub id (required)
#   PROTOCOL             redi | relift | rlvsdistill | kk: fills the unset variables below as that seed
#                        evaluated (eval_scripts/protocols.sh says what and where from) [none]
#   BENCHMARKS           [aime24,amc23,math500,minerva_math,olympiadbench]
#   BENCH_DIR            folder with <benchmark>.jsonl [$repo/data/benchmarks]; DOWNLOAD=1 fetches missing
#                        files from the Hugging Face hub first (python -m dataset.math_benchmarks --download)
#   DATA_FILES           comma-separated RL parquet files to evaluate instead of BENCHMARKS (no preparation)
#   N_SAMPLES [16]  TEMPERATURE [0.6] (0 = greedy)  TOP_P [0.95]  TOP_K [-1]
#   MAX_PROMPT_LENGTH [1024]  MAX_RESPONSE_LENGTH [min(32768, the model's context - MAX_PROMPT_LENGTH)]
#   TRUNCATION           prompts over MAX_PROMPT_LENGTH: error | left | right [error]
#   APPLY_CHAT_TEMPLATE  true | false (prompts already formatted) [true]
#   OUT_DIR              [eval_results/<model folder name>]
#   ROLLOUT              vllm | hf [vllm when a GPU and the vllm package are there, hf otherwise]
#   N_GPUS               workers per node [number of GPUs, 1 without GPU]; NNODES [1]
#   BATCH_SIZE           prompts per chunk (one part file each) [64 x workers with vllm, 8 x workers with hf]
#   TEMPLATE             user-prompt template with {problem} [the problem + "Let's think step by step and
#                        output the final answer within \boxed{}."]; SYSTEM_PROMPT [none]
#   LIMIT                only the first LIMIT prompts of each benchmark (smoke tests) [all]
#   REWARD_WORKERS       scoring processes [min(8, CPUs)]; REWARD_TIMEOUT seconds per response [10]
#   EVAL_ARGS            extra Hydra overrides for trainer.main_eval (space-separated)
#   CAPABILITY           1 = also run trainer.main_capability on the scores (pass@k curve, histogram) [0]
#   RELIFT_VALID (relift), KK_DIR, KK_MODEL = rl | instruct | r1distill (kk): see protocols.sh
#   Python: $PYTHON if set, else $RELIFT_VENV/bin/python if RELIFT_VENV is set, else <repo>/.venv/bin/python.
#
# Reruns resume: finished chunks in $OUT_DIR/<run>.parquet.parts/ are kept and skipped. Results:
# $OUT_DIR/<run>.parquet (responses), <run>.json (numbers), <run>.scores.parquet (one row per response);
# the last lines name every file written. Compare models with eval_scripts/compare.sh.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
case "${1:-}" in -h|--help) sed -n '2,/^if \[ -z/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"

. "$repo/scripts/find_python.sh"
relift_find_python eval_math
# shellcheck source=protocols.sh
. "$repo/eval_scripts/protocols.sh"
apply_protocol || exit 2
: "${MODEL_PATH:?set MODEL_PATH to a local HF checkpoint folder or a hub id (sh eval_scripts/eval_math.sh --help)}"
BENCHMARKS="${BENCHMARKS:-aime24,amc23,math500,minerva_math,olympiadbench}"
N_SAMPLES="${N_SAMPLES:-16}"
TEMPERATURE="${TEMPERATURE:-0.6}"
TOP_P="${TOP_P:-0.95}"
TOP_K="${TOP_K:--1}"
MAX_PROMPT_LENGTH="${MAX_PROMPT_LENGTH:-1024}"
MAX_RESPONSE_LENGTH="${MAX_RESPONSE_LENGTH:-null}"
TRUNCATION="${TRUNCATION:-error}"
APPLY_CHAT_TEMPLATE="${APPLY_CHAT_TEMPLATE:-true}"
NNODES="${NNODES:-1}"
REWARD_WORKERS="${REWARD_WORKERS:-null}"
REWARD_TIMEOUT="${REWARD_TIMEOUT:-10}"

gpus_found=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    gpus_found="$(nvidia-smi -L | grep -c '^GPU' || true)"
fi
if [ -z "${ROLLOUT:-}" ]; then
    if [ "$gpus_found" -gt 0 ] && "$PYTHON" -c "import vllm" >/dev/null 2>&1; then ROLLOUT=vllm; else ROLLOUT=hf; fi
fi
if [ -z "${N_GPUS:-}" ]; then
    if [ "$gpus_found" -gt 0 ]; then N_GPUS="$gpus_found"; else N_GPUS=1; fi
fi
workers=$((NNODES * N_GPUS))
if [ -z "${BATCH_SIZE:-}" ]; then
    if [ "$ROLLOUT" = vllm ]; then BATCH_SIZE=$((64 * workers)); else BATCH_SIZE=$((8 * workers)); fi
fi

model_name="$(basename "${MODEL_PATH%/}")"
OUT_DIR="${OUT_DIR:-eval_results/$model_name}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
suffix="${LIMIT:+_limit$LIMIT}"
if [ -n "${DATA_FILES:-}" ]; then what="${PROTOCOL:-files}"; else what="${PROTOCOL:+${PROTOCOL}_}${BENCHMARKS//,/-}"; fi
run="gen_${what}_n${N_SAMPLES}_t${TEMPERATURE}_p${TOP_P}$suffix"

echo "[eval_math] model $MODEL_PATH | protocol ${PROTOCOL:-none} | n $N_SAMPLES | temperature $TEMPERATURE | top_p $TOP_P"
echo "[eval_math] rollout $ROLLOUT | workers $workers ($NNODES node(s) x $N_GPUS) | chunk $BATCH_SIZE prompts | out $OUT_DIR/$run.*"

files=""
if [ -n "${DATA_FILES:-}" ]; then
    # evaluate these parquet files as they are (ReLIFT's valid.parquet, the KK test files, your own)
    IFS=',' read -r -a given <<< "$DATA_FILES"
    for f in "${given[@]}"; do
        if [ ! -f "$f" ]; then
            echo "[eval_math] data file not found: $f (DATA_FILES / RELIFT_VALID / KK_DIR)" >&2; exit 2
        fi
        files="${files:+$files,}'$(cd "$(dirname "$f")" && pwd)/$(basename "$f")'"
    done
else
    # 1. benchmark jsonl -> RL parquet (prompt template applied); data only from BENCH_DIR or a download
    BENCH_DIR="${BENCH_DIR:-$repo/data/benchmarks}"
    data_dir="$OUT_DIR/data$suffix"
    prep_args=(--input_dir "$BENCH_DIR" --out_dir "$data_dir" --benchmarks "$BENCHMARKS")
    [ "${DOWNLOAD:-0}" = "1" ] && prep_args+=(--download)
    [ -n "${LIMIT:-}" ] && prep_args+=(--limit "$LIMIT")
    [ -n "${TEMPLATE:-}" ] && prep_args+=(--template "$TEMPLATE")
    [ -n "${SYSTEM_PROMPT:-}" ] && prep_args+=(--system_prompt "$SYSTEM_PROMPT")
    "$PYTHON" -m dataset.math_benchmarks "${prep_args[@]}" >/dev/null
    IFS=',' read -r -a names <<< "$BENCHMARKS"
    for b in "${names[@]}"; do files="${files:+$files,}'$data_dir/$b.parquet'"; done
fi

# 2. sample N_SAMPLES responses per prompt (resumes from finished chunks; progress bar with ETA)
"$PYTHON" -m trainer.main_generation \
    data.path="[$files]" \
    data.output_path="'$OUT_DIR/$run.parquet'" \
    data.n_samples="$N_SAMPLES" \
    data.batch_size="$BATCH_SIZE" \
    data.max_prompt_length="$MAX_PROMPT_LENGTH" \
    data.max_response_length="$MAX_RESPONSE_LENGTH" \
    data.truncation="$TRUNCATION" \
    data.apply_chat_template="$APPLY_CHAT_TEMPLATE" \
    model.path="'$MODEL_PATH'" \
    rollout.name="$ROLLOUT" \
    rollout.temperature="$TEMPERATURE" \
    rollout.top_p="$TOP_P" \
    rollout.top_k="$TOP_K" \
    trainer.nnodes="$NNODES" \
    trainer.n_gpus_per_node="$N_GPUS" \
    "$@"

case " $* " in  # a dry run only plans the generation; there is nothing to score
    *" trainer.dry_run=true "*) echo "[eval_math] trainer.dry_run=true: generation planned, scoring skipped"; exit 0 ;;
esac

# 3. score every response and print the table
# shellcheck disable=SC2086  # EVAL_ARGS is a list of overrides
"$PYTHON" -m trainer.main_eval \
    data.path="'$OUT_DIR/$run.parquet'" \
    data.output_path="'$OUT_DIR/$run.json'" \
    reward.num_workers="$REWARD_WORKERS" \
    reward.timeout="$REWARD_TIMEOUT" \
    ${EVAL_ARGS:-}

# 4. (CAPABILITY=1) pass@k curve up to k = n and the solve-rate histogram of this model
if [ "${CAPABILITY:-0}" = "1" ]; then
    "$PYTHON" -m trainer.main_capability "$model_name=$OUT_DIR/$run.scores.parquet" --out_dir "$OUT_DIR/$run.capability"
fi

cap_note=""
[ "${CAPABILITY:-0}" = "1" ] && cap_note=" | capability plots and tables: $OUT_DIR/$run.capability/"
echo "[eval_math] done. responses: $OUT_DIR/$run.parquet | numbers: $OUT_DIR/$run.json |" \
     "per response: $OUT_DIR/$run.scores.parquet$cap_note"
echo "[eval_math] compare models: sh $repo/eval_scripts/compare.sh $OUT_DIR <other result folders>"
