#!/bin/sh
# Knights and knaves evaluation, the seed's table: every model answers the test puzzles of 2..8
# people in one trainer.main_generation run, trainer.main_eval scores them with the Logic-RL scorer
# (the prompt's prefilled <think> counted), and examples/kk/table.py prints rows = models, columns =
# Avg, 2ppl .. 8ppl (accuracy = mean@N_SAMPLES; the seed sampled its own models once at temperature
# 1.0 and the baseline Instruct models greedily).
#
#   MODELS="base=Qwen/Qwen2.5-7B-Instruct-1M grpo=checkpoints/kk/kk-grpo-7b/global_step_380/actor/huggingface" \
#       sh examples/kk/eval.sh
#   MODELS="base=Qwen/Qwen2.5-7B-Instruct-1M" sh examples/kk/eval.sh trainer.dry_run=true trainer.check_devices=false
#
# Environment: MODELS (required: space-separated NAME=PATH), DATA_DIR [~/data/kk/instruct] holding
# {N}ppl/test.parquet, SIZES ["2 3 4 5 6 7 8"], OUT_DIR [outputs/kk_eval], N_SAMPLES [1], TEMPERATURE
# [1.0] (0 = greedy), MAX_PROMPT_LENGTH [1024], RESPONSE_LENGTH [4096], ROLLOUT [vllm], DEVICE [cuda],
# N_GPUS_PER_NODE [1], TABLE_OUT (also write the table there), PYTHON / RELIFT_VENV. Extra arguments
# are Hydra overrides for main_generation.
# A dry run plans every generation and stops (no scoring, no table).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
kk_help "$0" "$@"
PY=$(kk_python)

: "${MODELS:?set MODELS to space-separated NAME=PATH pairs (see sh examples/kk/eval.sh --help)}"
DATA_DIR="${DATA_DIR:-$HOME/data/kk/instruct}"
SIZES="${SIZES:-2 3 4 5 6 7 8}"
OUT_DIR="${OUT_DIR:-outputs/kk_eval}"
files=""
for n in $SIZES; do files="$files,$DATA_DIR/${n}ppl/test.parquet"; done
files="[${files#,}]"
names=""
for pair in $MODELS; do
    name=${pair%%=*}; path=${pair#*=}
    if [ -z "$name" ] || [ "$name" = "$pair" ] || [ -z "$path" ]; then
        echo "MODELS entry '$pair' is not NAME=PATH" >&2; exit 2
    fi
    names="$names $name"
    gen="$OUT_DIR/$name/gen.parquet"
    kk_say "$name: answering the test puzzles of sizes $SIZES -> $gen"
    "$PY" -m trainer.main_generation \
        data.path="$files" data.output_path="$gen" \
        data.n_samples="${N_SAMPLES:-1}" data.max_prompt_length="${MAX_PROMPT_LENGTH:-1024}" \
        data.max_response_length="${RESPONSE_LENGTH:-4096}" \
        model.path="$path" rollout.name="${ROLLOUT:-vllm}" rollout.temperature="${TEMPERATURE:-1.0}" \
        rollout.top_p=1.0 \
        trainer.device="${DEVICE:-cuda}" trainer.n_gpus_per_node="${N_GPUS_PER_NODE:-1}" \
        "$@"
    if kk_is_dry "$@"; then continue; fi
    kk_say "$name: scoring -> $OUT_DIR/$name/eval.json"
    "$PY" -m trainer.main_eval data.path="$gen" data.output_path="$OUT_DIR/$name/eval.json" >/dev/null
done
if kk_is_dry "$@"; then kk_say "dry run: every generation planned"; exit 0; fi
# shellcheck disable=SC2086
"$PY" "$here/table.py" --root "$OUT_DIR" --models $names --sizes $SIZES ${TABLE_OUT:+--markdown-out "$TABLE_OUT"}
