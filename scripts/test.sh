#!/usr/bin/env bash
# README command 2: set up the environment, lint (ruff), then run the whole test suite (CPU; gpu tests skip).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k protocol` (or sh; --help prints this).
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,/^if \[/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;; esac
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="$(bash "$repo/scripts/setup_env.sh" | tail -n 1)"
cd "$repo"
# the lint rules are in pyproject.toml ([tool.ruff]); a finding fails the run like a failing test
"$python" -m ruff check "$repo"
set +e
"$python" -m pytest "$@"
rc=$?
set -e
# pytest exits 5 when it collected no test: that is a failure for us, never a pass
if [ "$rc" -eq 5 ]; then echo "[test] pytest collected no tests" >&2; exit 1; fi
exit "$rc"
