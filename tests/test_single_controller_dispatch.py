"""Dispatch/collect logic, the in-process backend, colocation and error wording - no Ray needed."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from relift.protocol import DataProto
from relift.single_controller import (
    Dispatch,
    Execute,
    InProcessWorkerGroup,
    RayClassWithInitArgs,
    Worker,
    WorkerGroupError,
    WorkerGroupFuture,
    create_colocated_worker_cls,
    register,
)
from relift.single_controller.decorator import collect_results, dispatch_call, get_registered_methods
from relift.single_controller.errors import classify_failure
from relift.single_controller.worker import DistInfo


def _data(n: int) -> DataProto:
    return DataProto.from_dict({"x": torch.arange(n), "m": torch.arange(2 * n).view(n, 2)},
                               {"uid": np.array([f"u{i}" for i in range(n)], dtype=object)}, {"temperature": 1.0})


class Echo(Worker):
    def __init__(self, offset: int = 0) -> None:
        self.offset = offset
        self.calls = 0

    @register(Dispatch.ONE_TO_ALL)
    def where(self, tag: str = "") -> tuple[int, int, str]:
        return self.rank, self.world_size, tag

    @register(Dispatch.ALL_TO_ALL)
    def pick(self, a, b=None):
        return (self.rank, a, b)

    @register(Dispatch.DP_COMPUTE_PROTO)
    def add(self, data: DataProto) -> DataProto:
        self.calls += 1
        return DataProto.from_dict({"y": data.batch["x"] + self.offset, "rank": torch.full((len(data),), self.rank)},
                                   {"uid": data.non_tensor_batch["uid"]}, {"rank_seen": self.rank})

    @register(Dispatch.DP_COMPUTE_PROTO)
    def sample(self, data: DataProto) -> DataProto:
        # 3 outputs per input row, kept together (like rollout.n samples per prompt)
        return data.select(batch_keys=["x"]).repeat(3, interleave=True)

    @register(Dispatch.DP_COMPUTE_PROTO, blocking=False)
    def add_async(self, data: DataProto) -> DataProto:
        return self.add(data)

    @register(Dispatch.DP_COMPUTE_METRIC)
    def row_count(self, data: DataProto) -> dict[str, float]:
        return {"rows": len(data), "sum": float(data.batch["x"].sum())}

    @register(Dispatch.RANK_ZERO)
    def only_zero(self, v):
        return ("zero", self.rank, v)

    @register(Dispatch.ONE_TO_ALL, execute_mode=Execute.RANK_ZERO)
    def save(self, path):
        return f"{path}@{self.rank}"

    @register(Dispatch.ONE_TO_ALL)
    def fail_on(self, rank: int):
        if self.rank == rank:
            raise ValueError(f"broken on rank {rank}")
        return self.rank

    def not_registered(self) -> int:
        return 100 + self.rank


# ---------------------------------------------------------------- register
def test_register_defaults_and_validation():
    specs = get_registered_methods(Echo)
    assert specs["only_zero"].execute_mode is Execute.RANK_ZERO
    assert specs["where"].execute_mode is Execute.ALL and specs["where"].blocking
    assert specs["add_async"].blocking is False
    assert "not_registered" not in specs
    with pytest.raises(ValueError, match="RANK_ZERO"):
        register(Dispatch.RANK_ZERO, execute_mode=Execute.ALL)
    with pytest.raises(ValueError, match="cannot run on rank 0 only"):
        register(Dispatch.DP_COMPUTE_PROTO, execute_mode=Execute.RANK_ZERO)
    with pytest.raises(TypeError, match="Dispatch member"):
        register("one_to_all")


def test_class_must_be_worker():
    class Plain:
        pass

    with pytest.raises(TypeError, match="must subclass relift.single_controller.Worker"):
        RayClassWithInitArgs(Plain)


# ---------------------------------------------------------------- dispatch functions
def test_dp_dispatch_pads_and_collect_unpads():
    data = _data(5)
    plan = dispatch_call(Dispatch.DP_COMPUTE_PROTO, Execute.ALL, 2, (data,), {}, "m")
    assert plan.pad_size == 1 and plan.padded_len == 6
    chunks = [a[0] for a in plan.args]
    assert [len(c) for c in chunks] == [3, 3]
    # the padding row is a copy of row 0, at the very end
    assert chunks[1].batch["x"].tolist() == [3, 4, 0]
    assert chunks[1].non_tensor_batch["uid"].tolist() == ["u3", "u4", "u0"]
    out = collect_results(Dispatch.DP_COMPUTE_PROTO, Execute.ALL, plan, [c.select(batch_keys=["x"]) for c in chunks])
    assert out.batch["x"].tolist() == [0, 1, 2, 3, 4]


def test_dp_collect_unpads_k_rows_per_input_and_rejects_other_lengths():
    plan = dispatch_call(Dispatch.DP_COMPUTE_PROTO, Execute.ALL, 4, (_data(6),), {}, "m")
    assert plan.pad_size == 2
    outs = [a[0].repeat(3) for a in plan.args]
    out = collect_results(Dispatch.DP_COMPUTE_PROTO, Execute.ALL, plan, outs)
    assert out.batch["x"].tolist() == [i for i in range(6) for _ in range(3)]
    odd = [a[0][:1] for a in plan.args]  # 4 rows for a padded batch of 8: not a multiple
    with pytest.raises(ValueError, match="cannot be removed"):
        collect_results(Dispatch.DP_COMPUTE_PROTO, Execute.ALL, plan, odd)
    with pytest.raises(TypeError, match="must return a DataProto"):
        collect_results(Dispatch.DP_COMPUTE_PROTO, Execute.ALL, plan, [1, 2, 3, 4])


def test_dp_dispatch_errors():
    with pytest.raises(TypeError, match="needs DataProto arguments, but argument 1 is int"):
        dispatch_call(Dispatch.DP_COMPUTE_PROTO, Execute.ALL, 2, (_data(4), 3), {}, "m")
    with pytest.raises(ValueError, match=r"same number of rows, got \[3, 4\]"):
        dispatch_call(Dispatch.DP_COMPUTE_PROTO, Execute.ALL, 2, (_data(4),), {"other": _data(3)}, "m")
    with pytest.raises(ValueError, match=r"DP_COMPUTE_METRIC needs the batch \(5 rows\) to divide"):
        dispatch_call(Dispatch.DP_COMPUTE_METRIC, Execute.ALL, 2, (_data(5),), {}, "m")


def test_all_to_all_needs_one_item_per_rank():
    plan = dispatch_call(Dispatch.ALL_TO_ALL, Execute.ALL, 3, ([1, 2, 3],), {"b": ("x", "y", "z")}, "m")
    assert plan.args == [(1,), (2,), (3,)] and plan.kwargs == [{"b": "x"}, {"b": "y"}, {"b": "z"}]
    with pytest.raises(ValueError, match="argument 'b' is a list of length 2"):
        dispatch_call(Dispatch.ALL_TO_ALL, Execute.ALL, 3, ([1, 2, 3],), {"b": ["x", "y"]}, "pick")
    with pytest.raises(ValueError, match="argument 0 is of type int"):
        dispatch_call(Dispatch.ALL_TO_ALL, Execute.ALL, 3, (7,), {}, "pick")


# ---------------------------------------------------------------- in-process backend
def test_inprocess_world_size_one_every_mode():
    wg = InProcessWorkerGroup(RayClassWithInitArgs(Echo, offset=10))
    assert wg.world_size == 1
    assert wg.where("t") == [(0, 1, "t")]
    assert wg.pick([5], b=["q"]) == [(0, 5, "q")]
    out = wg.add(_data(3))
    assert out.batch["y"].tolist() == [10, 11, 12] and out.meta_info == {"rank_seen": 0}
    assert wg.row_count(_data(2)) == [{"rows": 2, "sum": 1.0}]
    assert wg.only_zero(4) == ("zero", 0, 4)
    assert wg.save("ckpt") == "ckpt@0"
    fut = wg.add_async(_data(2))
    assert isinstance(fut, WorkerGroupFuture)
    assert fut.get().batch["y"].tolist() == [10, 11]
    assert wg.execute_all_sync("not_registered") == [100]
    # a plain class with constructor arguments works too
    wg2 = InProcessWorkerGroup(Echo, offset=1)
    assert wg2.add(_data(1)).batch["y"].tolist() == [1]


def test_inprocess_simulated_ranks_pad_and_route():
    wg = InProcessWorkerGroup(RayClassWithInitArgs(Echo), world_size=3)
    assert wg.where() == [(0, 3, ""), (1, 3, ""), (2, 3, "")]
    out = wg.add(_data(7))  # padded to 9 rows, 3 per rank, padding dropped again
    assert out.batch["y"].tolist() == list(range(7))
    assert out.batch["rank"].tolist() == [0, 0, 0, 1, 1, 1, 2]
    assert out.non_tensor_batch["uid"].tolist() == [f"u{i}" for i in range(7)]
    many = wg.sample(_data(4))  # 4 rows padded to 6, 3 samples each, padding (2 x 3 rows) removed
    assert many.batch["x"].tolist() == [i for i in range(4) for _ in range(3)]
    assert wg.row_count(_data(6)) == [{"rows": 2, "sum": s} for s in (1.0, 5.0, 9.0)]
    assert wg.only_zero("v") == ("zero", 0, "v")
    assert [w.calls for w in wg.workers] == [1, 1, 1]


def test_inprocess_errors_name_group_rank_method():
    wg = InProcessWorkerGroup(RayClassWithInitArgs(Echo), world_size=2, name_prefix="echo")
    with pytest.raises(WorkerGroupError) as info:
        wg.fail_on(1)
    err = info.value
    assert (err.group, err.rank, err.node, err.method, err.kind) == ("echo", 1, "local", "fail_on", "raised")
    assert "broken on rank 1" in str(err) and "'echo' rank 1" in str(err)
    assert isinstance(err.__cause__, ValueError)

    class BadInit(Worker):
        def __init__(self):
            raise RuntimeError("no model here")

    with pytest.raises(WorkerGroupError, match=r"rank 0 .* in method '__init__'"):
        InProcessWorkerGroup(BadInit)


def test_inprocess_process_group_world_one_and_simulated_refusal():
    import torch.distributed as dist

    class Dist(Worker):
        @register(Dispatch.ONE_TO_ALL)
        def reduce(self, v: float) -> float:
            self.init_process_group(timeout_s=30)
            t = torch.tensor([v])
            dist.all_reduce(t)
            return float(t.item())

    if dist.is_initialized():
        pytest.skip("another test left a process group in this process")
    wg = InProcessWorkerGroup(Dist)
    try:
        assert wg.reduce(2.5) == [2.5]
        assert dist.get_backend() == "gloo" and dist.get_world_size() == 1
        assert wg.reduce(1.0) == [1.0]  # a second init is a no-op
    finally:
        wg.shutdown()                   # the group leaves the process group its worker created
    assert not dist.is_initialized()
    bystander = InProcessWorkerGroup(Dist)
    dist.init_process_group("gloo", init_method="tcp://127.0.0.1:0", rank=0, world_size=1)
    try:
        assert bystander.reduce(3.0) == [3.0]
        bystander.shutdown()            # it joined a group someone else made: that one stays
        assert dist.is_initialized()
    finally:
        dist.destroy_process_group()
    sim = InProcessWorkerGroup(Dist, world_size=2)
    with pytest.raises(WorkerGroupError, match="simulates 2 ranks in one process"):
        sim.reduce(1.0)


class Actor(Worker):
    def __init__(self, lr: float) -> None:
        self.lr = lr

    @register(Dispatch.DP_COMPUTE_PROTO)
    def compute_log_prob(self, data: DataProto) -> DataProto:
        return DataProto.from_dict({"old_log_probs": data.batch["x"].float() * -self.lr})

    @register(Dispatch.ONE_TO_ALL)
    def info(self):
        return ("actor", self.rank, os.getpid())


class Ref(Worker):
    @register(Dispatch.DP_COMPUTE_PROTO)
    def compute_ref_log_prob(self, data: DataProto) -> DataProto:
        return DataProto.from_dict({"ref_log_prob": data.batch["x"].float() * -2})

    @register(Dispatch.ONE_TO_ALL)
    def info(self):
        return ("ref", self.rank, os.getpid())

    def helper(self, v):
        return v * 2


def test_colocated_inprocess_spawn_views():
    cls = create_colocated_worker_cls({"actor": RayClassWithInitArgs(Actor, lr=0.5), "ref": RayClassWithInitArgs(Ref)})
    wg = InProcessWorkerGroup(cls, world_size=2)
    assert set(wg.registered_methods) == {"actor_compute_log_prob", "actor_info",
                                          "ref_compute_ref_log_prob", "ref_info"}
    views = wg.spawn(prefix_set={"actor", "ref"})
    actor, ref = views["actor"], views["ref"]
    assert set(actor.registered_methods) == {"compute_log_prob", "info"}
    assert actor.info() == [("actor", 0, os.getpid()), ("actor", 1, os.getpid())]
    assert ref.info()[1][0] == "ref"
    assert actor.compute_log_prob(_data(3)).batch["old_log_probs"].tolist() == [0.0, -0.5, -1.0]
    assert ref.compute_ref_log_prob(_data(3)).batch["ref_log_prob"].tolist() == [0.0, -2.0, -4.0]
    assert ref.execute_all_sync("helper", 4) == [8, 8]  # unregistered role method via execute_all
    # both roles live in the same worker object per rank
    assert all(set(w._relift_roles) == {"actor", "ref"} for w in wg.workers)
    with pytest.raises(KeyError, match="no role"):
        wg.spawn(["critic"])
    with pytest.raises(TypeError, match="create_colocated_worker_cls"):
        InProcessWorkerGroup(Ref).spawn(["ref"])


# ---------------------------------------------------------------- small pieces
def test_dist_info_env_roundtrip():
    info = DistInfo(rank=3, world_size=4, local_rank=1, local_world_size=2, master_addr="10.0.0.1",
                    master_port=1234, group_name="g", backend="ray")
    assert DistInfo.from_env(info.to_env()) == info
    with pytest.raises(ValueError, match="RANK='x' is not an integer"):
        DistInfo.from_env({"RANK": "x"})


def test_failure_classification_and_message():
    import ray.exceptions as rex

    assert classify_failure(ValueError("x")) == "raised"
    assert classify_failure(rex.OutOfMemoryError("Task was killed due to the node running low on memory")) == "oom"
    assert classify_failure(rex.NodeDiedError("node gone")) == "node_died"
    assert classify_failure(rex.GetTimeoutError("slow")) == "timeout"
    err = WorkerGroupError("actor", 2, "10.0.0.7", "update_actor", rex.OutOfMemoryError("killed"), pid=42)
    text = str(err)
    assert "'actor' rank 2 on node 10.0.0.7 (pid 42)" in text and "too much memory" in text
    assert "'update_actor'" in text
    import pickle

    again = pickle.loads(pickle.dumps(err))
    assert (again.group, again.rank, again.node, again.method, again.kind) == \
        ("actor", 2, "10.0.0.7", "update_actor", "oom")


def test_ip_sort_key_is_numeric():
    pytest.importorskip("ray")
    from relift.single_controller.resource_pool import ip_sort_key

    ips = ["10.0.0.10", "10.0.0.9", "192.168.1.2", "10.0.1.1"]
    assert sorted(ips, key=ip_sort_key) == ["10.0.0.9", "10.0.0.10", "10.0.1.1", "192.168.1.2"]
