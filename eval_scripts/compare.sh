#!/bin/sh
# One comparison table from existing evaluation results (nothing is sampled or scored again).
#
#   sh eval_scripts/compare.sh [NAME=]RESULT... [--metric mean@n|maj@n|pass@K] [--out PREFIX] [--benchmarks a,b]
#
# RESULT: a trainer.main_eval JSON (<run>.json) or a folder of them (eval_math.sh's OUT_DIR, one per
# model); NAME= sets the row name (default: the folder's name). Prints a markdown table (models as
# rows, benchmarks + average as columns, values in %) and writes PREFIX.md and PREFIX.csv
# (default ./comparison). Python: $PYTHON, else $RELIFT_VENV/bin/python, else <repo>/.venv/bin/python.
set -eu
repo="$(cd "$(dirname "$0")/.." && pwd)"
case "${1:-}" in -h|--help|"") sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; [ -n "${1:-}" ] && exit 0; exit 2 ;; esac
. "$repo/scripts/find_python.sh"
relift_find_python compare
PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" exec "$PYTHON" -m trainer.main_compare "$@"
