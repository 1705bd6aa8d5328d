#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment and install relift into it.
#
# Usage: source-free; prints the venv's python path on the last line.
#   RELIFT_VENV   where the venv lives (default: <repo>/.venv)
#   RELIFT_FRESH  1 = rebuild from scratch (CI sets this so a missing install step cannot hide)
#   RELIFT_EXTRAS extras to install (default: test)
# The venv is rebuilt when pyproject.toml changes (a hash stamp is kept inside it).
#   bash scripts/setup_env.sh          (or sh scripts/setup_env.sh; --help prints this)
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,/^if \[/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;; esac
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${RELIFT_VENV:-$repo/.venv}"
extras="${RELIFT_EXTRAS:-test}"
fresh="${RELIFT_FRESH:-0}"
[ "${CI:-}" = "true" ] && fresh=1

stamp_want="$( (cat "$repo/pyproject.toml"; echo "$extras") | sha256sum | cut -d' ' -f1)"
stamp_file="$venv/.relift-stamp"
if [ "$fresh" != "1" ] && [ -x "$venv/bin/python" ] && [ "$(cat "$stamp_file" 2>/dev/null)" = "$stamp_want" ]; then
    echo "[setup] reusing $venv (pyproject unchanged)" >&2
    echo "$venv/bin/python"
    exit 0
fi

py="${PYTHON:-python3}"
echo "[setup] creating $venv with $($py --version 2>&1)" >&2
"$py" -m venv --clear "$venv"
pip_q=(-q --disable-pip-version-check)
# torch first and pinned: on machines with a local CPU wheel (pip find-links) this takes it
# and never pulls the CUDA build; on GPU clusters install your CUDA torch 2.13.0 beforehand
# and run with RELIFT_VENV pointing at that environment.
"$venv/bin/python" -m pip install "${pip_q[@]}" "torch==2.13.0" >&2
"$venv/bin/python" -m pip install "${pip_q[@]}" -e "$repo[$extras]" >&2
# fail now, not in the middle of a run, if the install is incomplete
"$venv/bin/python" -c "import torch, ray, transformers, hydra, tensordict, torchdata, math_verify, pandas, pyarrow, relift" >&2
echo "$stamp_want" > "$stamp_file"
echo "[setup] ready: $("$venv/bin/python" -c 'import torch; print("torch", torch.__version__)')" >&2
echo "$venv/bin/python"
