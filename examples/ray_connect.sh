#!/usr/bin/env bash
# Join this machine to a running relift Ray cluster as a worker node (run on every worker machine).
#
# Variables:
#   RAY_HEAD_ADDRESS     head's GCS address, ip:port (required; printed by examples/ray_start.sh)
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
set -euo pipefail

if [[ -z "${RAY_HEAD_ADDRESS:-}" ]]; then
    echo "set RAY_HEAD_ADDRESS=<head ip>:<port> (examples/ray_start.sh prints it)" >&2
    exit 2
fi
head_host="${RAY_HEAD_ADDRESS%:*}"
head_port="${RAY_HEAD_ADDRESS##*:}"
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"

args=(start --address="${RAY_HEAD_ADDRESS}")
[[ -n "${RAY_NODE_IP:-}" ]] && args+=(--node-ip-address="${RAY_NODE_IP}")
[[ -n "${RAY_NUM_CPUS:-}" ]] && args+=(--num-cpus="${RAY_NUM_CPUS}")
[[ -n "${RAY_NUM_GPUS:-}" ]] && args+=(--num-gpus="${RAY_NUM_GPUS}")
[[ -n "${RAY_RESOURCES:-}" ]] && args+=(--resources="${RAY_RESOURCES}")
[[ -n "${RAY_TEMP_DIR:-}" ]] && args+=(--temp-dir="${RAY_TEMP_DIR}")
[[ "${RAY_BLOCK:-0}" == 1 ]] && args+=(--block)
# shellcheck disable=SC2206
[[ -n "${RAY_EXTRA_ARGS:-}" ]] && args+=(${RAY_EXTRA_ARGS})

if [[ "${DRY_RUN:-0}" == 1 ]]; then
    echo "RAY_AUTH_MODE=${RAY_AUTH_MODE} ray ${args[*]}"
    exit 0
fi

command -v ray >/dev/null || { echo "ray is not on PATH: activate the relift environment first" >&2; exit 1; }
if [[ "${RAY_AUTH_MODE}" == token && -z "${RAY_AUTH_TOKEN:-}" && -z "${RAY_AUTH_TOKEN_PATH:-}" \
      && ! -s "${HOME}/.ray/auth_token" ]]; then
    echo "token auth is on but this node has no token: copy the head's ~/.ray/auth_token here," \
         "or export RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH (or RAY_AUTH_MODE=disabled on both sides)" >&2
    exit 2
fi

# a bounded wait for the head, so a wrong address or a firewall fails with a message instead of hanging
deadline=$(( SECONDS + ${RAY_CONNECT_TIMEOUT_S:-120} ))
until timeout 3 bash -c "exec 3<>/dev/tcp/${head_host}/${head_port}" 2>/dev/null; do
    if (( SECONDS >= deadline )); then
        echo "the Ray head at ${RAY_HEAD_ADDRESS} did not answer within ${RAY_CONNECT_TIMEOUT_S:-120} s:" \
             "is examples/ray_start.sh running there, and is port ${head_port} open between the machines?" >&2
        exit 1
    fi
    sleep 2
done

ray "${args[@]}"
echo "joined ${RAY_HEAD_ADDRESS}; check with: ray status --address=${RAY_HEAD_ADDRESS}"
