#!/bin/sh
# Start the Ray head node of a relift cluster (run once, on the head machine).
#
#   source ./examples/ray_start.sh      # as in ReLIFT's README (bash/zsh; `. ./examples/ray_start.sh` in sh)
#   sh examples/ray_start.sh            # the same, run as a script
#   sh examples/ray_start.sh --help     # this text; starts nothing
#
# Sourcing is safe: everything runs in a subshell, so your shell keeps its options (no set -e/-u
# leaks), its variables and its positional parameters, and a failure returns a status instead of
# exiting your shell. Nothing is exported into your shell.
#
# Variables (all optional):
#   RAY_HEAD_PORT        GCS port the other nodes connect to                  (default 6379)
#   RAY_NODE_IP          IP this node advertises (multi-NIC machines)        (default: $MASTER_ADDR when
#                        set, ReLIFT's name for it; else Ray picks)
#   RAY_NUM_CPUS         CPUs this node offers to workers                    (default: all)
#   RAY_NUM_GPUS         GPUs this node offers                               (default: all visible)
#   RAY_RESOURCES        extra custom resources as JSON, e.g. '{"node_a": 1}'
#   RAY_DASHBOARD_HOST   where the dashboard / job API listens (default 127.0.0.1; reach it through
#                        an SSH tunnel, or set 0.0.0.0 on a trusted network)
#   RAY_DASHBOARD_PORT   dashboard / job-submission port                     (default 8265)
#   RAY_TEMP_DIR         Ray's session directory root                        (default /tmp/ray)
#   RAY_AUTH_MODE        token (default) or disabled; with token a token is created in
#                        ~/.ray/auth_token when none exists - copy it to every node
#   RAY_EXTRA_ARGS       anything else for `ray start`, e.g. "--object-store-memory=20000000000"
#   RAY_BLOCK=1          keep running in the foreground (container entrypoints)
#   DRY_RUN=1            print the command instead of running it
# The `ray` command is the one of relift's environment (scripts/find_python.sh: $RELIFT_VENV, else
# <repo>/.venv), so the cluster runs the same Ray version as the driver.

_relift_ray_start() (
    set -eu
    repo="$(cd "$1" && pwd)"; executed="$2"; shift 2
    if [ ! -f "$repo/scripts/find_python.sh" ]; then  # sourced from plain sh outside the checkout
        echo "[ray_start] cannot tell where the relift checkout is: source it from the checkout" \
             "(. ./examples/ray_start.sh) or run it as a script (sh /path/to/relift/examples/ray_start.sh)" >&2
        exit 2
    fi
    case "${1:-}" in
        -h|--help)
            sed -n '2,/^_relift_ray_start() (/p' "$repo/examples/ray_start.sh" | sed '$d' \
                | sed -e '/^[^#]/d' -e 's/^# \{0,1\}//'
            exit 0 ;;
    esac
    if [ "$executed" = 1 ] && [ $# -gt 0 ]; then  # sourced, "$@" may be the caller's own arguments
        echo "[ray_start] unknown argument '$1' (settings are environment variables; see --help)" >&2
        exit 2
    fi
    port="${RAY_HEAD_PORT:-6379}"
    node_ip="${RAY_NODE_IP:-${MASTER_ADDR:-}}"
    RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"
    export RAY_AUTH_MODE
    set -- start --head --port="$port" \
        --dashboard-host="${RAY_DASHBOARD_HOST:-127.0.0.1}" --dashboard-port="${RAY_DASHBOARD_PORT:-8265}"
    [ -n "$node_ip" ] && set -- "$@" --node-ip-address="$node_ip"
    [ -n "${RAY_NUM_CPUS:-}" ] && set -- "$@" --num-cpus="$RAY_NUM_CPUS"
    [ -n "${RAY_NUM_GPUS:-}" ] && set -- "$@" --num-gpus="$RAY_NUM_GPUS"
    [ -n "${RAY_RESOURCES:-}" ] && set -- "$@" --resources="$RAY_RESOURCES"
    [ -n "${RAY_TEMP_DIR:-}" ] && set -- "$@" --temp-dir="$RAY_TEMP_DIR"
    [ "${RAY_BLOCK:-0}" = 1 ] && set -- "$@" --block
    # shellcheck disable=SC2086  # word splitting of the extra arguments is wanted
    [ -n "${RAY_EXTRA_ARGS:-}" ] && set -- "$@" $RAY_EXTRA_ARGS

    if [ "${DRY_RUN:-0}" = 1 ]; then
        echo "RAY_AUTH_MODE=$RAY_AUTH_MODE ray $*"
        exit 0
    fi

    . "$repo/scripts/find_python.sh"
    relift_find_python ray_start
    ray="$(dirname "$PYTHON")/ray"
    if [ ! -x "$ray" ]; then
        echo "[ray_start] $ray not found: install relift into that environment (bash scripts/setup_env.sh)" >&2
        exit 2
    fi
    if [ "$RAY_AUTH_MODE" = token ] && [ -z "${RAY_AUTH_TOKEN:-}" ] && [ -z "${RAY_AUTH_TOKEN_PATH:-}" ] \
        && [ ! -s "$HOME/.ray/auth_token" ]; then
        "$ray" get-auth-token --generate >/dev/null
        echo "created a Ray auth token in ~/.ray/auth_token; copy it to every worker node (same path) or export RAY_AUTH_TOKEN there"
    fi

    "$ray" "$@"

    ip="${node_ip:-$("$PYTHON" -c 'import ray; print(ray.util.get_node_ip_address())' 2>/dev/null \
                    || hostname -I | awk '{print $1}')}"
    cat <<MSG

Head node is up at $ip:$port.
  worker nodes:  RAY_HEAD_ADDRESS=$ip:$port sh examples/ray_connect.sh   (or: MASTER_ADDR=$ip source ./examples/ray_connect.sh)
  check:         $ray status            (every node listed, with its CPUs/GPUs)
  run a recipe on this node:   sh examples/math-7b/train_two_nodes.sh ...
  or a driver:                 RAY_ADDRESS=$ip:$port $PYTHON -m trainer.main_rl trainer.nnodes=N ...
  stop this node:              $ray stop
MSG
)

# Where this file is: bash names it; `sh file` and zsh have it in $0; sourced from sh (which cannot
# tell), the working directory is the checkout (./examples/ray_start.sh) or its examples/ folder.
# POSIX `.` passes no arguments, so `. ./examples/ray_start.sh --help` in sh cannot see --help:
# use `sh examples/ray_start.sh --help` (or DRY_RUN=1) there.
case "$(basename -- "$0")" in ray_start.sh) _relift_ray_exec=1 ;; *) _relift_ray_exec=0 ;; esac
for _relift_ray_dir in "$(dirname -- "${BASH_SOURCE:-$0}")/.." "$PWD" "$PWD/.."; do
    [ -f "$_relift_ray_dir/scripts/find_python.sh" ] && [ -f "$_relift_ray_dir/examples/ray_start.sh" ] && break
done
_relift_ray_start "$_relift_ray_dir" "$_relift_ray_exec" "$@"
eval "unset -f _relift_ray_start; unset _relift_ray_dir _relift_ray_exec; (exit $?)"
