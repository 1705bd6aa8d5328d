#!/bin/sh
# GPU smoke test: run this first on a new cluster node (or in the GPU image: `docker run --gpus all relift:gpu smoke`).
#
#   sh scripts/gpu_smoke.sh [--require-vllm] [--bucket-mb MB]
#
# Checks, each with its time: CUDA visible; NCCL (one-rank process group + all_reduce); a tiny Qwen2
# model written locally; one FSDP2 training step; vLLM imports and generates 8 tokens; one bucketed
# weight sync from the FSDP actor into the engine, then 8 tokens again. Without vLLM the engine
# steps use the HF engine and say so (--require-vllm makes that a failure).
# Exit status: 0 all passed, 1 a check failed, 2 no CUDA device (nothing else is checked then).
# Python: $RELIFT_VENV/bin/python, else <repo>/.venv/bin/python (create it: bash scripts/setup_env.sh).
set -eu

case "${1:-}" in
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac

REPO=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
if [ -n "${RELIFT_VENV:-}" ]; then
    PY="$RELIFT_VENV/bin/python"
    [ -x "$PY" ] || { echo "gpu_smoke: RELIFT_VENV=$RELIFT_VENV has no bin/python" >&2; exit 1; }
elif [ -x "$REPO/.venv/bin/python" ]; then
    PY="$REPO/.venv/bin/python"
else
    echo "gpu_smoke: no Python environment found: set RELIFT_VENV, or create $REPO/.venv with" \
         "'bash scripts/setup_env.sh' (GPU extras: RELIFT_EXTRAS=vllm bash scripts/setup_env.sh)" >&2
    exit 1
fi
cd "$REPO"
exec "$PY" -m workers.gpu_smoke "$@"
