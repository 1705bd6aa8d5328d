#!/usr/bin/env bash
# Evaluate a model on the math benchmarks: prepare parquet, sample N answers per prompt, score them,
# print a pass@k table per benchmark (mean@n, pass@1, 2, 4, ..., n, maj@n).
#
#   MODEL_PATH=/path/to/model bash eval_scripts/eval_math.sh [hydra overrides for main_generation ...]
#
# Environment (defaults in brackets):
#   MODEL_PATH           local HF checkpoint or hub id (required)
#   BENCHMARKS           [aime24,amc23,math500,minerva_math,olympiadbench]
#   BENCH_DIR            folder with <benchmark>.jsonl [$repo/data/benchmarks, else ../shared/data/benchmarks]
#   N_SAMPLES [16]  TEMPERATURE [0.6] (0 = greedy)  TOP_P [0.95]  TOP_K [-1]
#   MAX_PROMPT_LENGTH [1024]  MAX_RESPONSE_LENGTH [min(32768, the model's context - MAX_PROMPT_LENGTH)]
#   TRUNCATION           prompts over MAX_PROMPT_LENGTH: error | left | right [error]
#   OUT_DIR              [eval_results/<model folder name>]
#   ROLLOUT              vllm | hf [vllm when a GPU and the vllm package are there, hf otherwise]
#   N_GPUS               workers per node [number of GPUs, 1 without GPU]; NNODES [1]
#   BATCH_SIZE           prompts per chunk (one part file each) [64 x workers with vllm, 8 x workers with hf]
#   TEMPLATE             user-prompt template with {problem} [the problem + "Let's think step by step and
#                        output the final answer within \boxed{}."]; SYSTEM_PROMPT [none]
#   LIMIT                only the first LIMIT prompts of each benchmark (smoke tests) [all]
#   REWARD_WORKERS       scoring processes [min(8, CPUs)]; REWARD_TIMEOUT seconds per response [10]
#   EVAL_ARGS            extra Hydra overrides for trainer.main_eval (space-separated)
#   PYTHON               [$RELIFT_VENV/bin/python if RELIFT_VENV is set, else $repo/.venv/bin/python if it
#                        exists, else python3]
#
# Reruns resume: finished chunks in $OUT_DIR/<run>.parquet.parts/ are kept and skipped. Results:
# $OUT_DIR/<run>.parquet (responses), <run>.json (numbers), <run>.scores.parquet (one row per response).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"

: "${MODEL_PATH:?set MODEL_PATH to a local HF checkpoint folder or a hub id}"
if [ -z "${PYTHON:-}" ]; then
    if [ -n "${RELIFT_VENV:-}" ]; then PYTHON="$RELIFT_VENV/bin/python"
    elif [ -x "$repo/.venv/bin/python" ]; then PYTHON="$repo/.venv/bin/python"
    else PYTHON=python3; fi
fi
BENCHMARKS="${BENCHMARKS:-aime24,amc23,math500,minerva_math,olympiadbench}"
if [ -z "${BENCH_DIR:-}" ]; then
    for d in "$repo/data/benchmarks" "$repo/../shared/data/benchmarks"; do
        if [ -d "$d" ]; then BENCH_DIR="$(cd "$d" && pwd)"; break; fi
    done
fi
: "${BENCH_DIR:?set BENCH_DIR to a folder with <benchmark>.jsonl files (see eval_scripts/README.md)}"
N_SAMPLES="${N_SAMPLES:-16}"
TEMPERATURE="${TEMPERATURE:-0.6}"
TOP_P="${TOP_P:-0.95}"
TOP_K="${TOP_K:--1}"
MAX_PROMPT_LENGTH="${MAX_PROMPT_LENGTH:-1024}"
MAX_RESPONSE_LENGTH="${MAX_RESPONSE_LENGTH:-null}"
TRUNCATION="${TRUNCATION:-error}"
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
data_dir="$OUT_DIR/data$suffix"
run="gen_${BENCHMARKS//,/-}_n${N_SAMPLES}_t${TEMPERATURE}_p${TOP_P}$suffix"

echo "[eval_math] model $MODEL_PATH | benchmarks $BENCHMARKS | n $N_SAMPLES | temperature $TEMPERATURE | top_p $TOP_P"
echo "[eval_math] rollout $ROLLOUT | workers $workers ($NNODES node(s) x $N_GPUS) | chunk $BATCH_SIZE prompts | out $OUT_DIR/$run.*"

# 1. benchmark jsonl -> RL parquet (prompt template applied)
prep_args=(--input_dir "$BENCH_DIR" --out_dir "$data_dir" --benchmarks "$BENCHMARKS")
[ -n "${LIMIT:-}" ] && prep_args+=(--limit "$LIMIT")
[ -n "${TEMPLATE:-}" ] && prep_args+=(--template "$TEMPLATE")
[ -n "${SYSTEM_PROMPT:-}" ] && prep_args+=(--system_prompt "$SYSTEM_PROMPT")
"$PYTHON" -m dataset.math_benchmarks "${prep_args[@]}" >/dev/null

files=""
IFS=',' read -r -a names <<< "$BENCHMARKS"
for b in "${names[@]}"; do files="${files:+$files,}'$data_dir/$b.parquet'"; done

# 2. sample N_SAMPLES responses per prompt (resumes from finished chunks)
"$PYTHON" -m trainer.main_generation \
    data.path="[$files]" \
    data.output_path="'$OUT_DIR/$run.parquet'" \
    data.n_samples="$N_SAMPLES" \
    data.batch_size="$BATCH_SIZE" \
    data.max_prompt_length="$MAX_PROMPT_LENGTH" \
    data.max_response_length="$MAX_RESPONSE_LENGTH" \
    data.truncation="$TRUNCATION" \
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
