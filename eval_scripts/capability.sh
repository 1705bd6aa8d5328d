#!/bin/sh
# Capability analysis (arXiv 2505.14216) of scored samples: pass@k curves on a log-k axis up to k = n,
# per-question solve-rate histograms and, for two or more models, the transition table by difficulty.
#
#   sh eval_scripts/capability.sh [NAME=]SCORES... --out_dir DIR [--benchmarks a,b] [--bins 8]
#
# SCORES: a <run>.scores.parquet from trainer.main_eval (eval_math.sh writes one per run) or a folder
# holding exactly one. The first model is the baseline of the transition tables. Writes
# DIR/passk_<benchmark>.png, DIR/solve_rate_<benchmark>.png, DIR/capability.md and DIR/capability.json.
# Python: $PYTHON, else $RELIFT_VENV/bin/python, else <repo>/.venv/bin/python.
set -eu
repo="$(cd "$(dirname "$0")/.." && pwd)"
case "${1:-}" in -h|--help|"") sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; [ -n "${1:-}" ] && exit 0; exit 2 ;; esac
. "$repo/scripts/find_python.sh"
relift_find_python capability
PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" exec "$PYTHON" -m trainer.main_capability "$@"
