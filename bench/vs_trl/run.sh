#!/bin/sh
# relift vs TRL GRPO on the same CPU jobs (issue 18): see bench/vs_trl/README.md.
#
#   sh bench/vs_trl/run.sh                          # jobs tiny + small, 2 alternating repeats each
#   sh bench/vs_trl/run.sh --jobs tiny --repeats 3  # any option of bench/vs_trl/run.py (--help lists them)
#
# Environment: PYTHON or RELIFT_VENV (a venv with relift installed; default <repo>/.venv). TRL goes into its own
# venv, bench/vs_trl/.venv-trl, created on the first run (needs PyPI or the local wheel mirror).
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
case "${1:-}" in -h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'
    echo "Options of run.py:"; ;; esac
. "$repo/scripts/find_python.sh"
relift_find_python vs_trl  # PYTHON, else $RELIFT_VENV, else <repo>/.venv; exit 2 with the fix

exec "$PYTHON" "$here/run.py" "$@"
