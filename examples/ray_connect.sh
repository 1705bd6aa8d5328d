#!/bin/sh
# Join this machine to a running relift Ray cluster as a worker node (run on every worker machine).
#
#   RAY_HEAD_ADDRESS=10.0.0.1:6379 sh examples/ray_connect.sh
#   MASTER_ADDR=10.0.0.1 source ./examples/ray_connect.sh    # as in ReLIFT's README (`.` in sh)
#   sh examples/ray_connect.sh --help                          # this text; connects nothing
#
# Sourcing is safe: everything runs in a subshell, so your shell keeps its options (no set -e/-u
# leaks), its variables and its positional parameters, and a failure returns a status instead of
# exiting your shell. Nothing is exported into your shell.
#
# Variables:
#   RAY_HEAD_ADDRESS     head's GCS address, ip:port (printed by examples/ray_start.sh); or
#   MASTER_ADDR          ReLIFT's name: the head's IP, the port then comes from RAY_HEAD_PORT [6379]
#   RAY_NODE_IP          IP this node advertises (multi-NIC machines)        (default: Ray picks)
#   RAY_NUM_CPUS         CPUs this node offers                               (default: all)
#   RAY_NUM_GPUS         GPUs this node offers                               (default: all visible)
#   RAY_RESOURCES        extra custom resources as JSON, e.g. '{"node_b": 1}'
#   RAY_TEMP_DIR         Ray's session directory root                        (default /tmp/ray)
#   RAY_AUTH_MODE        token (default) or disabled - must match the head; with token the head's
#                        token must be in ~/.ray/auth_token, RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH
#   RAY_CONNECT_TIMEOUT_S  how long to wait for the head to answer before giving up (default 120)
#   RAY_EXTRA_ARGS       anything else for `ray start`
#   RAY_BLOCK=1          keep running in the foreground (container entrypoints)
#   DRY_RUN=1            print the command instead of running it
# The `ray` command is the one of relift's environment (scripts/find_python.sh: $RELIFT_VENV, else
# <repo>/.venv), so every node runs the same Ray version.

_relift_ray_connect() (
    set -eu
    repo="$(cd "$1" && pwd)"; executed="$2"; shift 2
    if [ ! -f "$repo/scripts/find_python.sh" ]; then  # sourced from plain sh outside the checkout
        echo "[ray_connect] cannot tell where the relift checkout is: source it from the checkout" \
             "(. ./examples/ray_connect.sh) or run it as a script (sh /path/to/relift/examples/ray_connect.sh)" >&2
        exit 2
    fi
    case "${1:-}" in
        -h|--help)
            sed -n '2,/^_relift_ray_connect() (/p' "$repo/examples/ray_connect.sh" | sed '$d' \
                | sed -e '/^[^#]/d' -e 's/^# \{0,1\}//'
            exit 0 ;;
    esac
    if [ "$executed" = 1 ] && [ $# -gt 0 ]; then  # sourced, "$@" may be the caller's own arguments
        echo "[ray_connect] unknown argument '$1' (settings are environment variables; see --help)" >&2
        exit 2
    fi
    address="${RAY_HEAD_ADDRESS:-}"
    if [ -z "$address" ] && [ -n "${MASTER_ADDR:-}" ]; then address="$MASTER_ADDR:${RAY_HEAD_PORT:-6379}"; fi
    if [ -z "$address" ]; then
        echo "[ray_connect] set RAY_HEAD_ADDRESS=<head ip>:<port> (examples/ray_start.sh prints it)" \
             "or MASTER_ADDR=<head ip>" >&2
        exit 2
    fi
    head_host="${address%:*}"
    head_port="${address##*:}"
    RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"
    export RAY_AUTH_MODE

    set -- start --address="$address"
    [ -n "${RAY_NODE_IP:-}" ] && set -- "$@" --node-ip-address="$RAY_NODE_IP"
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
    relift_find_python ray_connect
    ray="$(dirname "$PYTHON")/ray"
    if [ ! -x "$ray" ]; then
        echo "[ray_connect] $ray not found: install relift into that environment (bash scripts/setup_env.sh)" >&2
        exit 2
    fi
    if [ "$RAY_AUTH_MODE" = token ] && [ -z "${RAY_AUTH_TOKEN:-}" ] && [ -z "${RAY_AUTH_TOKEN_PATH:-}" ] \
        && [ ! -s "$HOME/.ray/auth_token" ]; then
        echo "[ray_connect] token auth is on but this node has no token: copy the head's ~/.ray/auth_token here," \
             "or export RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH (or RAY_AUTH_MODE=disabled on both sides)" >&2
        exit 2
    fi

    # a bounded wait for the head, so a wrong address or a firewall fails with a message instead of hanging
    timeout_s="${RAY_CONNECT_TIMEOUT_S:-120}"
    if ! "$PYTHON" - "$head_host" "$head_port" "$timeout_s" <<'PY'
import socket, sys, time
host, port, deadline = sys.argv[1], int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
while True:
    try:
        socket.create_connection((host, port), timeout=3).close()
        break
    except OSError:
        if time.monotonic() >= deadline:
            sys.exit(1)
        time.sleep(2)
PY
    then
        echo "[ray_connect] the Ray head at $address did not answer within $timeout_s s:" \
             "is examples/ray_start.sh running there, and is port $head_port open between the machines?" >&2
        exit 1
    fi

    "$ray" "$@"
    echo "joined $address; check with: $ray status --address=$address"
)

# Where this file is: bash names it; `sh file` and zsh have it in $0; sourced from sh (which cannot
# tell), the working directory is the checkout (./examples/ray_connect.sh) or its examples/ folder.
# POSIX `.` passes no arguments, so `. ./examples/ray_connect.sh --help` in sh cannot see --help:
# use `sh examples/ray_connect.sh --help` (or DRY_RUN=1) there.
case "$(basename -- "$0")" in ray_connect.sh) _relift_ray_exec=1 ;; *) _relift_ray_exec=0 ;; esac
for _relift_ray_dir in "$(dirname -- "${BASH_SOURCE:-$0}")/.." "$PWD" "$PWD/.."; do
    [ -f "$_relift_ray_dir/scripts/find_python.sh" ] && [ -f "$_relift_ray_dir/examples/ray_connect.sh" ] && break
done
_relift_ray_connect "$_relift_ray_dir" "$_relift_ray_exec" "$@"
eval "unset -f _relift_ray_connect; unset _relift_ray_dir _relift_ray_exec; (exit $?)"
