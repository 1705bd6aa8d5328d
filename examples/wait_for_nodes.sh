#!/bin/sh
# Wait until the running Ray cluster has NNODES alive nodes (used by examples/common/on_nodes.sh).
#
#   NNODES=2 sh examples/wait_for_nodes.sh [hydra overrides of the recipe]
#
# Joins RAY_ADDRESS, or the `ray start` cluster on this machine (address "auto"); never starts a new
# one. Gives up after WAIT_NODES_TIMEOUT seconds [600] with a message saying how many nodes joined.
# Does nothing when trainer.dry_run=true is among its arguments (a dry run needs no cluster).
# Python: scripts/find_python.sh ($RELIFT_VENV/bin/python, else <repo>/.venv/bin/python).
set -eu
case "${1:-}" in -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
for arg in "$@"; do
    case "$arg" in
        trainer.dry_run=true|trainer.dry_run=True) exit 0 ;;
    esac
done
repo="$(cd "$(dirname "$0")/.." && pwd)"
. "$repo/scripts/find_python.sh"
relift_find_python wait_for_nodes
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
"$PYTHON" - "${NNODES:-2}" "${WAIT_NODES_TIMEOUT:-600}" <<'PY'
import socket
import sys
import time

import ray

from relift.single_controller.ray_init import find_existing_cluster

HINT = ("start one with `bash examples/ray_start.sh` on the head node and "
        "`RAY_HEAD_ADDRESS=<ip:port> bash examples/ray_connect.sh` on the others")
want, timeout = int(sys.argv[1]), float(sys.argv[2])
address, source = find_existing_cluster()  # RAY_ADDRESS, else a live `ray start` cluster on this machine
if address is None:
    sys.exit(f"[wait_for_nodes] no running Ray cluster ({source}); {HINT}")
host, _, port = address.rpartition(":")
if port.isdigit():  # ray.init retries an unreachable GCS for minutes: fail fast with a message instead
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except OSError as e:
        sys.exit(f"[wait_for_nodes] the Ray cluster at {address} (from {source}) does not answer: {e}; {HINT}")
try:
    ray.init(address=address, logging_level="ERROR", log_to_driver=False)
except ConnectionError as e:
    sys.exit(f"[wait_for_nodes] cannot join the Ray cluster at {address} (from {source}): {e}; {HINT}")
deadline = time.monotonic() + timeout
while True:
    alive = [n for n in ray.nodes() if n.get("Alive")]
    gpus = sum(n.get("Resources", {}).get("GPU", 0) for n in alive)
    if len(alive) >= want:
        print(f"[wait_for_nodes] {len(alive)} node(s) alive with {gpus:g} GPU(s) in total", flush=True)
        break
    if time.monotonic() > deadline:
        ray.shutdown()
        sys.exit(f"[wait_for_nodes] only {len(alive)} of {want} node(s) joined within {timeout:g} s; "
                 "run `RAY_HEAD_ADDRESS=<ip:port> bash examples/ray_connect.sh` on the missing node(s) and check `ray status`")
    print(f"[wait_for_nodes] {len(alive)}/{want} node(s) alive, waiting ...", flush=True)
    time.sleep(5)
ray.shutdown()
PY
