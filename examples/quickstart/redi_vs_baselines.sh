#!/bin/sh
# REDI vs continued SFT, DPO and SimPO on a toy teacher, on CPU (docs/redi.md).
#
#   sh examples/quickstart/redi_vs_baselines.sh                # 3 seeds, ~15-20 min on 2 CPU cores
#   SEEDS="1" OUT_DIR=/tmp/rvb sh examples/quickstart/redi_vs_baselines.sh
#
# A toy teacher writes worked column additions with injected slips (correct and incorrect traces,
# stored in OpenR1-Math-Raw's layout and filtered by dataset/prepare_redi.py); per seed a tiny
# model gets stage-1 SFT on the positives, then from that SFT model the same number of optimiser
# steps of: more SFT, REDI (alpha 0.8), DPO (beta 0.001), SimPO (beta 2, gamma 1).
# Writes $OUT_DIR/redi_vs_baselines.json ({"method", "seed", "val_acc"} records), stage1.json,
# redi_vs_baselines.png and prints a table.
#
# Environment: OUT_DIR (default <repo>/outputs/redi_vs_baselines), SEEDS (default "1 2 3"),
# RELIFT_VENV (a venv with relift installed; default <repo>/.venv; scripts/find_python.sh). Extra arguments go to
# examples/quickstart/redi_vs_baselines.py (e.g. --stage2-steps 200; --help lists them).
set -eu

case "${1:-}" in
    -h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
esac

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
repo="$REPO"
. "$REPO/scripts/find_python.sh"
relift_find_python redi_vs_baselines
OUT_DIR="${OUT_DIR:-$REPO/outputs/redi_vs_baselines}"
SEEDS="${SEEDS:-1 2 3}"
# two cores: one torch thread per process
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
export TOKENIZERS_PARALLELISM=false HYDRA_FULL_ERROR=1
exec "$PYTHON" "$REPO/examples/quickstart/redi_vs_baselines.py" --out "$OUT_DIR" --seeds "$SEEDS" "$@"
