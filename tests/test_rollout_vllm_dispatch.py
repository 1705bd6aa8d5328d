"""Defect 2 of issue 16: with tensor parallel > 1 the ranks of one TP group must get the same
prompts and seeds, and only one result per group may be kept.

A TP=2 x DP=2 group of the real :class:`ActorRolloutRefWorker` (role ``rollout``) runs on the
in-process backend with the stand-in ``vllm`` module; each rank builds its engine through the
worker's own ``_build_rollout`` (no model weights needed), then the group's ``set_rollout_seed``
and ``generate_sequences`` run as the trainer calls them.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import vllm_standin

from relift.protocol import DataProto
from relift.single_controller import Dispatch, InProcessWorkerGroup, RayClassWithInitArgs, Worker, register


def config(tp: int, world: int = 4, prompt_length: int = 4, response_length: int = 8,
           override_config: dict | None = None):
    """A rollout-only worker spec for the stand-in engine (no model files: built by hand, not planned)."""
    from relift.spec import FSDPSpec, MicroBatching, ModelSpec, PolicyWorkerSpec, RefSpec, RolloutSpec, SamplingSpec
    from relift.spec.sections import WorldSpec

    model = ModelSpec(path="fake-model", tokenizer_path="fake-model", trust_remote_code=False,
                      enable_gradient_checkpointing=False, dtype="float32", attn_implementation=None,
                      override_config=dict(override_config or {}), load_format="auto", use_remove_padding=False,
                      share_prompt_prefix=False)
    sampling = SamplingSpec(n=2, temperature=1.0, top_p=1.0, top_k=-1, do_sample=True)
    rollout = RolloutSpec(name="vllm", sampling=sampling, val_sampling=sampling, prompt_length=prompt_length,
                          response_length=response_length, calculate_log_probs=False, tensor_model_parallel_size=tp,
                          gpu_memory_utilization=0.5, enforce_eager=True, free_cache_engine=True,
                          max_num_batched_tokens=None, micro_batch_size=None, engine_kwargs={}, seed=7,
                          weight_sync_bucket_mb=None)
    fsdp = FSDPSpec(param_offload=False, optimizer_offload=False, mixed_precision="auto", reshard_after_forward=True,
                    init_on_rank0=True)
    return PolicyWorkerSpec(mode="generate", world=WorldSpec(1, world, "cpu", False, "inprocess", None, "auto"),
                            seed=7, model=model,
                            actor=None, rollout=rollout,
                            ref=RefSpec(False, "fake-model", MicroBatching(False, None, 0), fsdp, False), relift=None,
                            loss=None, max_actor_ckpt_to_keep=None)


def group(monkeypatch, tp: int, world: int = 4, cfg=None) -> InProcessWorkerGroup:
    vllm_standin.install(monkeypatch)
    from workers.fsdp_worker import ActorRolloutRefWorker

    wg = InProcessWorkerGroup(RayClassWithInitArgs(ActorRolloutRefWorker, cfg or config(tp, world), "rollout"),
                              world_size=world)
    for w in wg.workers:  # what init_model does for a rollout-only worker, minus tokenizer loading
        w.tokenizer = SimpleNamespace(pad_token_id=0)
        w._eos_token_ids = lambda: [vllm_standin.EOS]
        w.rollout = w._build_rollout()
        w._initialised = True
    return wg


def prompts(rows: int = 8) -> DataProto:
    ids = torch.arange(rows * 4).reshape(rows, 4) % 50 + 3
    mask = torch.ones_like(ids)
    return DataProto.from_dict({"input_ids": ids, "attention_mask": mask,
                                "position_ids": (mask.cumsum(-1) - 1)})


def last_generate(worker) -> tuple[list[list[int]], list[int]]:
    event = [e for e in worker.rollout.llm.events if e[0] == "generate"][-1]
    return event[1], event[2]


def test_tp2_dp2_group_ranks_get_identical_prompts_and_seeds(monkeypatch):
    wg = group(monkeypatch, tp=2)
    engine_seeds = [w.rollout.llm.kwargs["seed"] for w in wg.workers]
    assert engine_seeds[0] == engine_seeds[1] and engine_seeds[2] == engine_seeds[3] != engine_seeds[0]
    assert wg.set_rollout_seed(100) == [True] * 4
    batch = prompts(8)
    out = wg.generate_sequences(batch)

    got = [last_generate(w) for w in wg.workers]
    assert got[0] == got[1] and got[2] == got[3]              # one TP group: same prompts, same seeds
    assert got[0][0] != got[2][0] and not set(got[0][1]) & set(got[2][1])  # the DP ranks differ
    assert got[0][0] + got[2][0] == batch.batch["input_ids"].tolist()       # DP halves cover the batch once
    assert len(out) == 8 * 2                                  # one result per group kept: B x n rows, not 2x
    assert torch.equal(out.batch["prompts"][::2], batch.batch["input_ids"])  # in input order


def test_worker_passes_override_config_to_vllm_as_hf_overrides(monkeypatch):
    """Defect 1: the recipes' longer context (override_config) must reach vLLM's max_model_len check."""
    cfg = config(1, world=1, prompt_length=64, response_length=128)   # > the stand-in's 64 positions
    with pytest.raises(Exception, match="max_model_len"):
        group(monkeypatch, tp=1, world=1, cfg=cfg)
    cfg = config(1, world=1, prompt_length=64, response_length=128, override_config={"max_position_embeddings": 256})
    wg = group(monkeypatch, tp=1, world=1, cfg=cfg)
    llm = wg.workers[0].rollout.llm
    assert llm.kwargs["hf_overrides"] == {"max_position_embeddings": 256} and llm.kwargs["max_model_len"] == 192


def test_tp1_is_plain_data_parallel(monkeypatch):
    wg = group(monkeypatch, tp=1)
    wg.set_rollout_seed(100)
    out = wg.generate_sequences(prompts(8))
    got = [last_generate(w)[0] for w in wg.workers]
    assert [len(g) for g in got] == [2, 2, 2, 2] and len(out) == 16


def test_tp_must_divide_world_and_needs_vllm(monkeypatch):
    with pytest.raises(Exception, match="must divide"):
        group(monkeypatch, tp=3)
    from workers.rollout.layout import rollout_tp_size

    with pytest.raises(ValueError, match="needs rollout.name=vllm"):
        rollout_tp_size("hf", 2)


# ------------------------------------------------------------------ the mesh dispatch itself
class Echo(Worker):
    """Declares TP groups of ``tp`` ranks; ``tag`` is registered on the mesh (inside a function, so this
    file still collects where ``register`` has no ``mesh``)."""

    def __init__(self, tp: int) -> None:
        self._register_dispatch_collect_info("m", self.rank // tp, self.rank % tp == 0)

    def tag(self, data: DataProto) -> DataProto:
        return DataProto.from_dict({"x": data.batch["x"].clone(), "rank": torch.full((len(data),), self.rank)})


def test_mesh_dispatch_pads_by_dp_size_and_keeps_collecting_ranks(monkeypatch):
    monkeypatch.setattr(Echo, "tag", register(dispatch_mode=Dispatch.DP_COMPUTE_PROTO, mesh="m")(Echo.tag))
    wg = InProcessWorkerGroup(RayClassWithInitArgs(Echo, tp=2), world_size=6)   # TP 2 x DP 3
    data = DataProto.from_dict({"x": torch.arange(7)})                        # 7 rows: padded to 9 for DP 3
    out = wg.tag(data)
    assert out.batch["x"].tolist() == list(range(7))
    assert out.batch["rank"].tolist() == [0, 0, 0, 2, 2, 2, 4]


def test_mesh_info_validation():
    from relift.single_controller.decorator import Execute, MeshInfo, collect_results, dispatch_call

    with pytest.raises(ValueError, match="exactly one collecting"):
        MeshInfo("m", (0, 0, 1, 1), (True, True, True, False))
    with pytest.raises(ValueError, match="no rank has dp_rank 1"):
        MeshInfo("m", (0, 2), (True, True))
    with pytest.raises(ValueError, match="only applies to the data-parallel"):
        register(dispatch_mode=Dispatch.ONE_TO_ALL, mesh="m")
    mesh = MeshInfo("m", (0, 0, 1, 1), (False, True, True, False))
    plan = dispatch_call(Dispatch.DP_COMPUTE_PROTO, Execute.ALL, 4, (DataProto.from_dict({"x": torch.arange(4)}),),
                         {}, mesh=mesh)
    assert [a[0].batch["x"].tolist() for a in plan.args] == [[0, 1], [0, 1], [2, 3], [2, 3]]
    outs = [DataProto.from_dict({"r": torch.full((2,), r)}) for r in range(4)]
    merged = collect_results(Dispatch.DP_COMPUTE_PROTO, Execute.ALL, plan, outs)
    assert merged.batch["r"].tolist() == [1, 1, 2, 2]


def test_partial_mesh_declaration_is_an_error():
    class Half(Worker):
        def __init__(self) -> None:
            if self.rank == 0:
                self._register_dispatch_collect_info("m", 0, True)

        @register(dispatch_mode=Dispatch.DP_COMPUTE_PROTO, mesh="m")
        def f(self, data: DataProto) -> DataProto:
            return data

    wg = InProcessWorkerGroup(Half, world_size=2)
    with pytest.raises(RuntimeError, match=r"ranks \[1\] declared no place in mesh 'm'"):
        wg.f(DataProto.from_dict({"x": torch.arange(2)}))
