"""A real two-raylet Ray cluster on this machine: placement of a 2 nodes x 2 workers group,
gloo all-reduce across all four, init_ray joining via RAY_ADDRESS and starting a local instance.

Runs in its own Python process with a private RAY_TMPDIR, so the cluster it starts is never
recorded in /tmp/ray/ray_current_cluster (other tests' and helpers' ``ray.init()`` cannot join it)
and it is torn down (by that process, or Ray's reaper if it dies) before the test returns.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.timeout(400)]

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(r'''
    import json, logging, os, sys
    import ray
    from ray.cluster_utils import Cluster
    import torch
    import torch.distributed as dist
    from relift.single_controller import (Dispatch, RayClassWithInitArgs, RayResourcePool, RayWorkerGroup, Worker,
                                          init_ray, register)

    logging.basicConfig(level=logging.INFO)
    out = {}

    class Probe(Worker):
        @register(Dispatch.ONE_TO_ALL)
        def where(self):
            return {"rank": self.rank, "local_rank": self.local_rank, "local_world_size": self.local_world_size,
                    "node_id": ray.get_runtime_context().get_node_id()}

        @register(Dispatch.ONE_TO_ALL)
        def allreduce(self):
            self.init_process_group(timeout_s=60)
            t = torch.tensor([float(self.rank + 1)])
            dist.all_reduce(t)
            return float(t.item())

    os.environ.pop("RAY_ADDRESS", None)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "resources": {"node_a": 1},
                                                            "object_store_memory": 100 * 2**20})
    try:
        cluster.add_node(num_cpus=2, resources={"node_b": 1}, object_store_memory=100 * 2**20)
        cluster.wait_for_nodes()
        os.environ["RAY_ADDRESS"] = cluster.address
        info = init_ray()
        out["join"] = {"mode": info["mode"], "nodes": info["nodes"], "cpus": info["resources"].get("CPU")}
        node_name = {n["NodeID"]: ("node_a" if "node_a" in n["Resources"] else "node_b")
                     for n in ray.nodes() if n["Alive"]}
        pool = RayResourcePool([2, 2], use_gpu=False)
        wg = RayWorkerGroup(pool, RayClassWithInitArgs(Probe), name_prefix="probe")
        where = wg.where()
        out["where"] = [{**w, "node": node_name[w["node_id"]]} for w in where]
        out["placed"] = [{"rank": p.rank, "node_id": p.node_id, "node_ip": p.node_ip, "bundle": p.bundle_index}
                         for p in pool.placed_bundles()]
        out["allreduce"] = wg.allreduce()
        wg.shutdown(release_resources=True)
        ray.shutdown()
    finally:
        os.environ.pop("RAY_ADDRESS", None)
        cluster.shutdown()
    # a cluster file naming a dead cluster (a `ray start` head that went away) must not make the
    # driver hang or fail: init_ray reports it as stale and starts a local instance
    from ray._common.utils import get_ray_address_file
    with open(get_ray_address_file(None), "w") as f:
        f.write("127.0.0.1:1")
    info = init_ray(num_cpus=1, object_store_memory=100 * 2**20)
    out["local"] = {"mode": info["mode"], "nodes": info["nodes"], "cpus": info["resources"].get("CPU"),
                    "token_auth": info["token_auth"]}
    ray.shutdown()
    print("RESULT " + json.dumps(out))
''')


def _cluster_file() -> str | None:
    path = Path("/tmp/ray/ray_current_cluster")
    return path.read_text() if path.exists() else None


def test_two_node_cluster_placement_and_allreduce(tmp_path):
    before = _cluster_file()
    script = tmp_path / "two_node.py"
    script.write_text(SCRIPT)
    # a short private temp dir: Ray's unix socket paths must stay under ~100 characters
    ray_tmp = tempfile.mkdtemp(prefix="rl2n_", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    env.update(RAY_TMPDIR=ray_tmp, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    try:
        _run_and_check(script, env)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    # nothing was recorded where a plain ray.init() on this machine would look
    assert _cluster_file() == before


def _run_and_check(script: Path, env: dict[str, str]) -> None:
    proc = subprocess.Popen([sys.executable, str(script)], cwd=str(script.parent), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=330)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # our own session: the script and the raylets it started
        output, _ = proc.communicate()
        pytest.fail("two-node script did not finish in 330 s:\n" + output[-4000:])
    assert proc.returncode == 0, output[-6000:]
    result = json.loads(next(line for line in output.splitlines() if line.startswith("RESULT "))[len("RESULT "):])

    assert result["join"] == {"mode": "joined", "nodes": 2, "cpus": 4.0}
    where = result["where"]
    assert [w["rank"] for w in where] == [0, 1, 2, 3]
    assert [w["local_rank"] for w in where] == [0, 1, 0, 1] and {w["local_world_size"] for w in where} == {2}
    # ranks 0-1 share one node, ranks 2-3 the other
    assert where[0]["node"] == where[1]["node"] != where[2]["node"] == where[3]["node"]
    # ... and the node order is the pool's stable order: by node IP, then node id (both raylets share the IP here)
    placed = result["placed"]
    assert [p["node_id"] for p in placed] == [w["node_id"] for w in where]
    first, second = placed[0], placed[2]
    assert (first["node_ip"], first["node_id"]) <= (second["node_ip"], second["node_id"])
    assert result["allreduce"] == [10.0, 10.0, 10.0, 10.0]
    # a new local instance keeps Ray's default token authentication on
    assert result["local"] == {"mode": "started", "nodes": 1, "cpus": 1.0, "token_auth": "on"}
    assert "starting a local ray instance" in output.lower()
    assert "127.0.0.1:1, which does not answer (stale)" in output


def _script(name: str, **env: str) -> subprocess.CompletedProcess:
    # no RAY_* and no MASTER_ADDR: in-process torch.distributed tests of this session set MASTER_ADDR, which
    # ray_connect.sh reads as ReLIFT's name for the head's IP (it would wait for a head there)
    full = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k not in ("MASTER_ADDR", "MASTER_PORT")}
    full["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{full.get('PATH', '')}"
    full.update(env)
    return subprocess.run(["bash", str(REPO / "examples" / name)], env=full, capture_output=True, text=True, timeout=60)


def test_bring_up_scripts_build_the_documented_commands():
    head = _script("ray_start.sh", DRY_RUN="1", RAY_HEAD_PORT="6380", RAY_NUM_CPUS="8", RAY_NUM_GPUS="4",
                   RAY_RESOURCES='{"node_a": 1}', RAY_NODE_IP="10.0.0.5")
    assert head.returncode == 0, head.stderr
    cmd = head.stdout.strip()
    for part in ("RAY_AUTH_MODE=token", "ray start --head", "--port=6380", "--num-cpus=8", "--num-gpus=4",
                 '--resources={"node_a": 1}', "--node-ip-address=10.0.0.5", "--dashboard-host=127.0.0.1"):
        assert part in cmd, (part, cmd)
    worker = _script("ray_connect.sh", DRY_RUN="1", RAY_HEAD_ADDRESS="10.0.0.5:6380", RAY_NUM_GPUS="8")
    assert worker.returncode == 0, worker.stderr
    assert "ray start --address=10.0.0.5:6380 --num-gpus=8" in worker.stdout


def test_connect_script_fails_with_a_message_instead_of_hanging():
    missing = _script("ray_connect.sh")
    assert missing.returncode == 2 and "set RAY_HEAD_ADDRESS" in missing.stderr
    # nothing listens on port 1: a bounded wait, then a message naming the address
    dead = _script("ray_connect.sh", RAY_HEAD_ADDRESS="127.0.0.1:1", RAY_CONNECT_TIMEOUT_S="1",
                   RAY_AUTH_MODE="disabled")
    assert dead.returncode == 1
    assert "127.0.0.1:1 did not answer within 1 s" in dead.stderr
