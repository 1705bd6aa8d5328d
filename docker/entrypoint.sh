#!/bin/sh
# Entrypoint of the relift images (docker/Dockerfile, docker/Dockerfile.cpu).
#
#   recipe NAME [OVERRIDES...]  run examples/NAME/train.sh (quickstart, math-1.5b, math-7b, 7b, ...)
#   head                        start the Ray head and stay in the foreground (examples/ray_start.sh)
#   worker                      join the head at $RAY_HEAD_ADDRESS and stay (examples/ray_connect.sh)
#   smoke [ARGS...]             the GPU smoke test (scripts/gpu_smoke.sh)
#   --help                      this text
#   anything else               run as a command (e.g. python -m trainer.main_rl ...)
set -eu
REPO="${RELIFT_REPO:-/opt/relift}"   # where the image put the repository (override for tests)
usage() { sed -n '4,9p' "$0" | sed 's/^# \{0,1\}//'; }

recipes() { for d in "$REPO"/examples/*/train.sh; do [ -f "$d" ] && basename "$(dirname "$d")"; done | tr '\n' ' '; }

[ $# -gt 0 ] || { usage; exit 0; }
cmd="$1"
case "$cmd" in
    -h|--help|help) usage ;;
    recipe)
        shift
        [ $# -gt 0 ] || { echo "relift-entrypoint: recipe needs a name, one of: $(recipes)" >&2; exit 2; }
        name="$1"; shift
        script="$REPO/examples/$name/train.sh"
        [ -f "$script" ] || { echo "relift-entrypoint: no recipe '$name' ($script missing); have: $(recipes)" >&2; exit 2; }
        exec bash "$script" "$@" ;;
    head) shift; RAY_BLOCK=1 exec bash "$REPO/examples/ray_start.sh" "$@" ;;
    worker)
        shift
        [ -n "${RAY_HEAD_ADDRESS:-}" ] || { echo "relift-entrypoint: set RAY_HEAD_ADDRESS=ip:port of the head" >&2; exit 2; }
        RAY_BLOCK=1 exec bash "$REPO/examples/ray_connect.sh" "$@" ;;
    smoke) shift; exec sh "$REPO/scripts/gpu_smoke.sh" "$@" ;;
    *) exec "$@" ;;
esac
