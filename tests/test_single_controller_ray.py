"""RayWorkerGroup on a local Ray instance: every dispatch/execute mode, padding, futures,
colocation, failures (raise, SIGKILL, collective timeout, impossible resource requests)."""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np
import pytest
import torch

from relift.protocol import DataProto
from relift.single_controller import (
    Dispatch,
    Execute,
    RayClassWithInitArgs,
    ResourceRequestError,
    Worker,
    WorkerGroupError,
    WorkerGroupFuture,
    create_colocated_worker_cls,
    register,
)

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

ray = pytest.importorskip("ray")
# the worker classes below live in this test module, which Ray's workers cannot import: ship them by value
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

CPU = 0.5  # per worker, so several groups fit the 4-CPU session cluster at once


def _data(n: int) -> DataProto:
    return DataProto.from_dict({"x": torch.arange(n)}, {"uid": np.array([f"u{i}" for i in range(n)], dtype=object)})


class Echo(Worker):
    def __init__(self, offset: int = 0) -> None:
        self.offset = offset

    @register(Dispatch.ONE_TO_ALL)
    def where(self, tag: str = ""):
        return {"rank": self.rank, "world_size": self.world_size, "local_rank": self.local_rank,
                "pid": os.getpid(), "tag": tag, "omp": os.environ.get("OMP_NUM_THREADS"),
                "tok": os.environ.get("TOKENIZERS_PARALLELISM"), "master": self.get_master_addr_port(),
                "node_id": ray.get_runtime_context().get_node_id()}

    @register(Dispatch.ALL_TO_ALL)
    def pick(self, a, b=None):
        return (self.rank, a, b)

    @register(Dispatch.DP_COMPUTE_PROTO)
    def add(self, data: DataProto) -> DataProto:
        return DataProto.from_dict({"y": data.batch["x"] + self.offset, "rank": torch.full((len(data),), self.rank)},
                                   {"uid": data.non_tensor_batch["uid"]})

    @register(Dispatch.DP_COMPUTE_PROTO, blocking=False)
    def add_async(self, data: DataProto) -> DataProto:
        return self.add(data)

    @register(Dispatch.DP_COMPUTE_PROTO)
    def times_ten(self, data: DataProto) -> DataProto:
        return DataProto.from_dict({"z": data.batch["y"] * 10, "rank": torch.full((len(data),), self.rank)})

    @register(Dispatch.DP_COMPUTE_PROTO)
    def sample(self, data: DataProto) -> DataProto:
        return data.select(batch_keys=["x"]).repeat(2, interleave=True)

    @register(Dispatch.DP_COMPUTE_METRIC)
    def stats(self, data: DataProto):
        return {"rank": self.rank, "rows": len(data), "sum": int(data.batch["x"].sum())}

    @register(Dispatch.RANK_ZERO)
    def only_zero(self, v):
        return (self.rank, v)

    @register(Dispatch.ONE_TO_ALL, execute_mode=Execute.RANK_ZERO)
    def save(self, path):
        return f"{path}@{self.rank}"

    @register(Dispatch.ONE_TO_ALL)
    def allreduce(self):
        import torch.distributed as dist

        self.init_process_group(timeout_s=60)
        t = torch.tensor([float(self.rank + 1)])
        dist.all_reduce(t)
        return float(t.item()), dist.get_backend()

    @register(Dispatch.ONE_TO_ALL)
    def fail_on(self, rank: int):
        if self.rank == rank:
            raise ValueError(f"broken on rank {rank}")
        return self.rank

    def not_registered(self, v):
        return v + self.rank


class Fragile(Worker):
    @register(Dispatch.ONE_TO_ALL)
    def join(self, timeout_s: float):
        self.init_process_group(timeout_s=timeout_s)
        return True

    @register(Dispatch.ONE_TO_ALL)
    def lonely_allreduce(self):
        import torch.distributed as dist

        if self.rank == 0:  # rank 1 never joins this collective: rank 0 must time out, not hang
            dist.all_reduce(torch.ones(1))
        return self.rank

    @register(Dispatch.ONE_TO_ALL)
    def kill_rank_one(self):
        if self.rank == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(600)  # rank 0 stays busy: the driver must not wait for it


class BadInit(Worker):
    def __init__(self):
        if self.rank == 1:
            raise FileNotFoundError("model path /nope does not exist")


@pytest.fixture(scope="module")
def pool_and_group(ray_local):
    from relift.single_controller import RayResourcePool, RayWorkerGroup

    pool = RayResourcePool([2], use_gpu=False, num_cpus_per_bundle=CPU)
    wg = RayWorkerGroup(pool, RayClassWithInitArgs(ray.remote(Echo), offset=100), name_prefix="echo")
    yield pool, wg
    wg.shutdown(release_resources=True)


def test_group_layout_env_and_gloo(pool_and_group):
    pool, wg = pool_and_group
    assert wg.world_size == 2 and pool.world_size == 2
    info = wg.where("hi")
    assert [i["rank"] for i in info] == [0, 1] and [i["local_rank"] for i in info] == [0, 1]
    assert {i["world_size"] for i in info} == {2} and {i["tag"] for i in info} == {"hi"}
    assert info[0]["pid"] != info[1]["pid"] and os.getpid() not in {i["pid"] for i in info}
    assert {i["omp"] for i in info} == {"1"} and {i["tok"] for i in info} == {"false"}
    # every rank got the address rank 0's node published, and it is rank 0's node
    assert info[0]["master"] == info[1]["master"] == (wg.worker_info[0]["node_ip"], wg.worker_info[0]["master_port"])
    assert [w["node_id"] for w in wg.worker_info] == [i["node_id"] for i in info]
    assert wg.allreduce() == [(3.0, "gloo"), (3.0, "gloo")]


def test_dispatch_modes(pool_and_group):
    _, wg = pool_and_group
    assert wg.pick([1, 2], b=("a", "b")) == [(0, 1, "a"), (1, 2, "b")]
    with pytest.raises(ValueError, match="one item per rank"):
        wg.pick([1, 2, 3])
    out = wg.add(_data(4))
    assert out.batch["y"].tolist() == [100, 101, 102, 103] and out.batch["rank"].tolist() == [0, 0, 1, 1]
    assert out.non_tensor_batch["uid"].tolist() == ["u0", "u1", "u2", "u3"]
    assert wg.stats(_data(4)) == [{"rank": 0, "rows": 2, "sum": 1}, {"rank": 1, "rows": 2, "sum": 5}]
    assert wg.only_zero("v") == (0, "v")
    assert wg.save("/ckpt") == "/ckpt@0"
    assert wg.execute_all_sync("not_registered", 10) == [10, 11]
    assert wg.execute_rank_zero_sync("not_registered", 5) == 5


def test_padding_removed_from_results(pool_and_group):
    _, wg = pool_and_group
    out = wg.add(_data(5))  # 5 rows on 2 workers: padded to 6, padding dropped
    assert out.batch["y"].tolist() == [100, 101, 102, 103, 104]
    assert out.batch["rank"].tolist() == [0, 0, 0, 1, 1]
    assert out.non_tensor_batch["uid"].tolist() == [f"u{i}" for i in range(5)]
    many = wg.sample(_data(3))  # 3 rows -> 4 padded -> 8 outputs -> 6 after removing 1 x 2 padding rows
    assert many.batch["x"].tolist() == [0, 0, 1, 1, 2, 2]
    one = wg.add(_data(1))  # fewer rows than workers
    assert one.batch["y"].tolist() == [100]
    with pytest.raises(ValueError, match="DP_COMPUTE_METRIC needs the batch"):
        wg.stats(_data(3))


def test_futures_and_chaining(pool_and_group):
    _, wg = pool_and_group
    fut = wg.add_async(_data(4))
    assert isinstance(fut, WorkerGroupFuture) and fut.dp_chunks is not None and len(fut.dp_chunks) == 2
    # a future of an unpadded DP call goes chunk-by-chunk to the same ranks, not through the driver
    chained = wg.times_ten(fut)
    assert chained.batch["z"].tolist() == [1000, 1010, 1020, 1030]
    assert chained.batch["rank"].tolist() == [0, 0, 1, 1]
    assert fut.get().batch["y"].tolist() == [100, 101, 102, 103]
    padded = wg.add_async(_data(3))
    assert padded.dp_chunks is None  # padded results are fetched, unpadded and re-split instead
    assert wg.times_ten(padded).batch["z"].tolist() == [1000, 1010, 1020]


@pytest.mark.faults
def test_raise_names_group_rank_node_method(pool_and_group):
    _, wg = pool_and_group
    with pytest.raises(WorkerGroupError) as info:
        wg.fail_on(1)
    err = info.value
    assert (err.group, err.rank, err.method, err.kind) == ("echo", 1, "fail_on", "raised")
    assert err.node == wg.worker_info[1]["node_ip"] and err.pid == wg.worker_info[1]["pid"]
    assert "broken on rank 1" in str(err)
    assert isinstance(err.remote_exception, ValueError)
    assert wg.fail_on(5) == [0, 1]  # the group still works after a worker raised


@pytest.mark.faults
def test_collective_timeout_then_sigkill_surface(ray_local):
    from relift.single_controller import RayResourcePool, RayWorkerGroup

    pool = RayResourcePool([2], use_gpu=False, num_cpus_per_bundle=CPU)
    wg = RayWorkerGroup(pool, RayClassWithInitArgs(Fragile), name_prefix="fragile")
    try:
        assert wg.join(3.0) == [True, True]
        with pytest.raises(WorkerGroupError) as info:
            wg.lonely_allreduce()  # gloo gives up after 3 s on rank 0
        assert info.value.rank == 0 and info.value.method == "lonely_allreduce"
        assert "timed out" in str(info.value).lower() or "timeout" in str(info.value).lower()
        # rank 1 is SIGKILLed while rank 0 sleeps 600 s: the error must name rank 1 long before that
        with pytest.raises(WorkerGroupError) as info:
            wg.kill_rank_one()
        err = info.value
        assert (err.group, err.rank, err.method, err.kind) == ("fragile", 1, "kill_rank_one", "died")
        assert err.node == wg.worker_info[1]["node_ip"]
        assert "worker process died" in str(err)
    finally:
        wg.shutdown(release_resources=True)


@pytest.mark.faults
def test_constructor_failure_names_rank(ray_local):
    from relift.single_controller import RayResourcePool, RayWorkerGroup

    pool = RayResourcePool([2], use_gpu=False, num_cpus_per_bundle=CPU)
    try:
        with pytest.raises(WorkerGroupError) as info:
            RayWorkerGroup(pool, RayClassWithInitArgs(BadInit), name_prefix="badinit")
        err = info.value
        assert (err.group, err.rank, err.method, err.kind) == ("badinit", 1, "__init__", "raised")
        assert "model path /nope does not exist" in str(err)
    finally:
        pool.shutdown()


@pytest.mark.faults
def test_impossible_requests_fail_at_once(ray_local):
    from relift.single_controller import RayResourcePool, RayWorkerGroup

    with pytest.raises(ResourceRequestError) as info:
        RayWorkerGroup(RayResourcePool([8], use_gpu=False), RayClassWithInitArgs(Echo))
    text = str(info.value)
    assert "8 CPU in total but the cluster has 4" in text and "[8] bundles of {CPU 1}" in text
    with pytest.raises(ResourceRequestError, match="1 GPU in total but the cluster has 0"):
        RayWorkerGroup(RayResourcePool([1], use_gpu=True), RayClassWithInitArgs(Echo))
    with pytest.raises(ResourceRequestError, match=r"3 worker\(s\) on one node .* no node is that large"):
        RayResourcePool([3, 3], use_gpu=False, num_cpus_per_bundle=2.0).placed_bundles()


def test_request_that_does_not_fit_now_times_out(pool_and_group):
    from ray.util.placement_group import placement_group_table

    from relift.single_controller import RayResourcePool

    # the cluster has 4 CPUs, but the module's group holds 1: a 4-CPU node-sized request can't be placed now
    pool = RayResourcePool([1], use_gpu=False, num_cpus_per_bundle=4.0, pg_timeout_s=2.0)
    with pytest.raises(ResourceRequestError) as info:
        pool.placed_bundles()
    text = str(info.value)
    assert "not placed within 2 s" in text and "free now" in text and "CPU 4" in text
    states = {v["state"] for v in placement_group_table().values() if v["name"].startswith(pool.name_prefix)}
    assert states == {"REMOVED"}  # nothing left reserved


def test_colocated_roles_share_processes(ray_local):
    from relift.single_controller import RayResourcePool, RayWorkerGroup

    class Actor(Worker):
        def __init__(self, scale: float) -> None:
            self.scale = scale

        @register(Dispatch.DP_COMPUTE_PROTO)
        def compute_log_prob(self, data: DataProto) -> DataProto:
            return DataProto.from_dict({"old_log_probs": data.batch["x"].float() * self.scale})

        @register(Dispatch.ONE_TO_ALL)
        def who(self):
            return ("actor", self.rank, os.getpid())

    class Ref(Worker):
        @register(Dispatch.DP_COMPUTE_PROTO)
        def compute_ref_log_prob(self, data: DataProto) -> DataProto:
            return DataProto.from_dict({"ref_log_prob": -data.batch["x"].float()})

        @register(Dispatch.ONE_TO_ALL)
        def who(self):
            return ("ref", self.rank, os.getpid())

        def peek(self):
            return self.world_size

    cls = create_colocated_worker_cls({"actor": RayClassWithInitArgs(ray.remote(Actor), scale=0.5),
                                       "ref": RayClassWithInitArgs(Ref)})
    pool = RayResourcePool([2], use_gpu=False, num_cpus_per_bundle=CPU)
    wg = RayWorkerGroup(pool, cls, name_prefix="fused")
    try:
        roles = wg.spawn(prefix_set={"actor", "ref"})
        a, r = roles["actor"], roles["ref"]
        aw, rw = a.who(), r.who()
        assert [x[:2] for x in aw] == [("actor", 0), ("actor", 1)] and [x[:2] for x in rw] == [("ref", 0), ("ref", 1)]
        assert [x[2] for x in aw] == [x[2] for x in rw]  # same process per rank
        assert a.compute_log_prob(_data(3)).batch["old_log_probs"].tolist() == [0.0, 0.5, 1.0]
        assert r.compute_ref_log_prob(_data(3)).batch["ref_log_prob"].tolist() == [0.0, -1.0, -2.0]
        assert r.execute_all_sync("peek") == [2, 2]
        assert wg.actor_who()[0][0] == "actor"  # the fused group keeps prefixed names
    finally:
        wg.shutdown(release_resources=True)
