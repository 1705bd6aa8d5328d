#!/usr/bin/env bash
# Start the Ray head node of a relift cluster (run once, on the head machine).
#
# Variables (all optional):
#   RAY_HEAD_PORT        GCS port the other nodes connect to                  (default 6379)
#   RAY_NODE_IP          IP this node advertises (multi-NIC machines)        (default: Ray picks)
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
set -euo pipefail

port="${RAY_HEAD_PORT:-6379}"
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"

args=(start --head --port="${port}"
      --dashboard-host="${RAY_DASHBOARD_HOST:-127.0.0.1}" --dashboard-port="${RAY_DASHBOARD_PORT:-8265}")
[[ -n "${RAY_NODE_IP:-}" ]] && args+=(--node-ip-address="${RAY_NODE_IP}")
[[ -n "${RAY_NUM_CPUS:-}" ]] && args+=(--num-cpus="${RAY_NUM_CPUS}")
[[ -n "${RAY_NUM_GPUS:-}" ]] && args+=(--num-gpus="${RAY_NUM_GPUS}")
[[ -n "${RAY_RESOURCES:-}" ]] && args+=(--resources="${RAY_RESOURCES}")
[[ -n "${RAY_TEMP_DIR:-}" ]] && args+=(--temp-dir="${RAY_TEMP_DIR}")
[[ "${RAY_BLOCK:-0}" == 1 ]] && args+=(--block)
# shellcheck disable=SC2206  # word splitting of the extra arguments is wanted
[[ -n "${RAY_EXTRA_ARGS:-}" ]] && args+=(${RAY_EXTRA_ARGS})

if [[ "${DRY_RUN:-0}" == 1 ]]; then
    echo "RAY_AUTH_MODE=${RAY_AUTH_MODE} ray ${args[*]}"
    exit 0
fi

command -v ray >/dev/null || { echo "ray is not on PATH: activate the relift environment first" >&2; exit 1; }
if [[ "${RAY_AUTH_MODE}" == token && -z "${RAY_AUTH_TOKEN:-}" && -z "${RAY_AUTH_TOKEN_PATH:-}" \
      && ! -s "${HOME}/.ray/auth_token" ]]; then
    ray get-auth-token --generate >/dev/null
    echo "created a Ray auth token in ~/.ray/auth_token; copy it to every worker node (same path) or export RAY_AUTH_TOKEN there"
fi

ray "${args[@]}"

ip="${RAY_NODE_IP:-$(python -c 'import ray; print(ray.util.get_node_ip_address())' 2>/dev/null || hostname -I | awk '{print $1}')}"
cat <<MSG

Head node is up at ${ip}:${port}.
  worker nodes:  RAY_HEAD_ADDRESS=${ip}:${port} bash examples/ray_connect.sh
  check:         ray status            (every node listed, with its CPUs/GPUs)
  run a driver on this node:   RAY_ADDRESS=${ip}:${port} python -m trainer.main_rl trainer.nnodes=N ...
  or submit a job:             ray job submit --address http://127.0.0.1:${RAY_DASHBOARD_PORT:-8265} --working-dir . -- python -m trainer.main_rl ...
  stop this node:              ray stop
MSG
