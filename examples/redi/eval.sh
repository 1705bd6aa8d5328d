#!/bin/sh
# The REDI paper's evaluation protocol: AIME24, AMC23, MATH-500, Minerva, OlympiadBench; 16 samples
# per problem at temperature 0.6, top-p 0.95, up to 32k tokens (32768 positions in all, with the
# widened context of the REDI models); reports mean@16 (the paper's pass@1) per benchmark.
# A wrapper of eval_scripts/eval_math.sh (see it for the other variables: BENCH_DIR, OUT_DIR, N_GPUS...).
#
#   MODEL_PATH=checkpoints/relift/redi-alpha0.8/hf sh examples/redi/eval.sh
#   MODEL_PATH=... sh examples/redi/eval.sh trainer.dry_run=true trainer.check_devices=false   # plan only
#
# Environment: MODEL_PATH [checkpoints/relift/redi-alpha0.8/hf], N_SAMPLES [16], TEMPERATURE [0.6],
# TOP_P [0.95], MAX_PROMPT_LENGTH [1024], MAX_RESPONSE_LENGTH [31744 = 32768 - 1024].
# Extra arguments are Hydra overrides for trainer.main_generation.
set -eu
case "${1:-}" in -h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
here="$(cd "$(dirname "$0")" && pwd)"
export MODEL_PATH="${MODEL_PATH:-checkpoints/relift/redi-alpha0.8/hf}"
export BENCHMARKS="${BENCHMARKS:-aime24,amc23,math500,minerva_math,olympiadbench}"
export N_SAMPLES="${N_SAMPLES:-16}" TEMPERATURE="${TEMPERATURE:-0.6}" TOP_P="${TOP_P:-0.95}"
export MAX_PROMPT_LENGTH="${MAX_PROMPT_LENGTH:-1024}" MAX_RESPONSE_LENGTH="${MAX_RESPONSE_LENGTH:-31744}"
exec bash "$here/../../eval_scripts/eval_math.sh" \
    ++model.override_config.max_position_embeddings=32768 \
    ++model.override_config.rope_theta=300000.0 \
    "$@"
