#!/bin/sh
# GPU smoke test: run this first on a new cluster node (or in the GPU image: `docker run --gpus all relift:gpu smoke`).
#
#   sh scripts/gpu_smoke.sh [--require-vllm] [--bucket-mb MB]
#
# Checks, each with its time: CUDA visible; NCCL (one-rank process group + all_reduce); a tiny Qwen2
# model written locally; one FSDP2 training step; vLLM imports and generates 8 tokens; one bucketed
# weight sync from the FSDP actor into the engine, then 8 tokens again. Without vLLM the engine
# steps use the HF engine and say so (--require-vllm makes that a failure).
# Exit status: 0 all passed, 1 a check failed or no Python environment, 2 no CUDA device (nothing else
# is checked then).
# Python: scripts/find_python.sh ($RELIFT_VENV/bin/python, else <repo>/.venv/bin/python; create it with
# bash scripts/setup_env.sh, GPU extras: RELIFT_EXTRAS=vllm bash scripts/setup_env.sh).
set -eu

case "${1:-}" in
    -h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
esac

repo=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
. "$repo/scripts/find_python.sh"
(relift_find_python gpu_smoke) || exit 1   # exit status 2 means "no CUDA device" here
relift_find_python gpu_smoke
cd "$repo"
exec "$PYTHON" -m workers.gpu_smoke "$@"
