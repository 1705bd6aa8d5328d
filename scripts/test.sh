#!/usr/bin/env bash
# README command 2: set up the environment, lint (ruff), then run the whole test suite (CPU; gpu tests skip).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k protocol`.
set -euo pipefail
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
