"""The vLLM adapter on CPU, against the stand-in ``vllm`` module of the pinned release (0.30.0).

Real vLLM needs a GPU (``tests/test_rollout_hf.py::test_vllm_greedy_matches_hf_and_weight_sync`` and
``scripts/gpu_smoke.sh`` run it where there is one). The stand-in (``tests/vllm_standin.py``) has
vLLM 0.30.0's keyword names and refuses unknown ones, applies ``hf_overrides`` before its
``max_model_len`` check, seeds the j-th sample of a request with ``seed + j`` as vLLM's
``ParentRequest`` does, and refuses to generate while asleep. Each of the five defects of issue 16
has a test here or in ``test_rollout_vllm_dispatch.py`` / ``test_weight_sync.py``.
"""

from __future__ import annotations

import inspect

import pytest
import torch
import vllm_standin

from relift.protocol import DataProto


def make(monkeypatch, **cfg):
    vllm_standin.install(monkeypatch)
    from workers.rollout.vllm import VLLMRollout

    config = {"n": 2, "prompt_length": 4, "response_length": 8, "temperature": 1.0, "seed": 3,
              "free_cache_engine": False}
    config.update(cfg)
    overrides = config.pop("_hf_overrides", None)
    return VLLMRollout("fake-model", config, hf_overrides=overrides)


def prompts() -> DataProto:
    ids = torch.tensor([[0, 0, 5, 6], [0, 7, 8, 9], [4, 5, 6, 7]])
    mask = (ids != 0).long()
    return DataProto.from_dict({"input_ids": ids, "attention_mask": mask,
                                "position_ids": (mask.cumsum(-1) - 1).clamp(min=0)})


def generated(llm) -> list[tuple]:
    return [e for e in llm.events if e[0] == "generate"]


# ------------------------------------------------------------------ the stand-in itself
def test_standin_refuses_unknown_keywords(monkeypatch):
    mod = vllm_standin.install(monkeypatch)
    with pytest.raises(TypeError, match="max_model_length"):
        mod.LLM("m", max_model_length=10)
    with pytest.raises(TypeError, match="max_new_tokens"):
        mod.SamplingParams(max_new_tokens=3)
    assert {"hf_overrides", "logprobs_mode", "enable_sleep_mode", "distributed_executor_backend",
            "load_format", "max_model_len"} <= (vllm_standin.LLM_KWARGS | vllm_standin.ENGINE_ARGS_FIELDS)
    assert list(inspect.signature(mod.LLM.sleep).parameters) == ["self", "level", "mode"]
    assert list(inspect.signature(mod.LLM.wake_up).parameters) == ["self", "tags"]


def test_engine_kwargs_are_all_known_to_vllm(monkeypatch):
    rollout = make(monkeypatch, tensor_model_parallel_size=2, max_num_seqs=64, enable_prefix_caching=True)
    kw = rollout.llm.kwargs
    assert kw["tensor_parallel_size"] == 2 and kw["distributed_executor_backend"] == "external_launcher"
    assert kw["logprobs_mode"] == "processed_logprobs" and kw["max_model_len"] == 12 and kw["seed"] == 3


# ------------------------------------------------------------------ defect 1: override_config -> hf_overrides
def test_override_config_reaches_vllm_as_hf_overrides(monkeypatch):
    # the recipes' longer context: max_model_len (prompt + response) above the checkpoint's 64 positions
    long_ctx = {"prompt_length": 64, "response_length": 64}
    with pytest.raises(ValueError, match="max_model_len"):
        make(monkeypatch, **long_ctx)
    rollout = make(monkeypatch, **long_ctx, _hf_overrides={"max_position_embeddings": 256, "rope_theta": 40000.0})
    assert rollout.llm.kwargs["hf_overrides"] == {"max_position_embeddings": 256, "rope_theta": 40000.0}
    assert rollout.llm.kwargs["max_model_len"] == 128


# ------------------------------------------------------------------ defect 3: sleep after generation
def test_engine_sleeps_after_generation_and_wakes_for_sync_and_generation(monkeypatch):
    rollout = make(monkeypatch, free_cache_engine=True, sleep_level=1)
    llm = rollout.llm
    assert llm.events == [("sleep", 1)]                       # asleep right after start-up
    rollout.update_weights({"embed.weight": torch.ones(8, 4), "head.weight": torch.ones(8, 4)})
    assert llm.events[1:] == [("wake_up", ("weights",)), ("apply_model",), ("wake_up", ("kv_cache",))]
    rollout.generate_sequences(prompts())
    assert llm.events[-2][0] == "generate" and llm.events[-1] == ("sleep", 1)   # KV cache freed for training
    assert llm.sleeping == {"weights", "kv_cache"}
    rollout.generate_sequences(prompts())                      # no sync in between: wakes everything first
    assert llm.events[-3:-1] == [("wake_up", None), llm.events[-2]] and llm.events[-1] == ("sleep", 1)


def test_engine_sleeps_even_when_generation_fails(monkeypatch):
    rollout = make(monkeypatch, free_cache_engine=True)

    def boom(*a, **k):
        raise RuntimeError("CUDA out of memory")

    rollout.llm.generate = boom
    with pytest.raises(RuntimeError, match="out of memory"):
        rollout.generate_sequences(prompts())
    assert rollout.llm.events[-1] == ("sleep", 1)


# ------------------------------------------------------------------ defect 4: seeds collide across prompts
def test_sample_seeds_are_distinct_across_prompts_and_samples(monkeypatch):
    rollout = make(monkeypatch, n=4)
    rollout.reseed(5)
    out = rollout.generate_sequences(prompts())
    request_seeds = generated(rollout.llm)[-1][2]
    sample_seeds = [s + j for s in request_seeds for j in range(4)]   # vLLM: child j samples with seed + j
    assert len(set(sample_seeds)) == 12, sample_seeds
    rows = [tuple(r) for r in out.batch["responses"].tolist()]
    assert len(set(rows)) == 12                                 # no two samples share a random stream


def test_reseed_repeats_samples_and_new_seed_changes_them(monkeypatch):
    rollout = make(monkeypatch)
    rollout.generate_sequences(prompts())
    assert generated(rollout.llm)[-1][2] == [None, None, None]     # not reseeded yet: vLLM's own RNG
    assert rollout.reseed(5) is True
    first = rollout.generate_sequences(prompts())
    rollout.reseed(5)
    again = rollout.generate_sequences(prompts())
    assert torch.equal(first.batch["responses"], again.batch["responses"])
    rollout.reseed(6)
    other = rollout.generate_sequences(prompts())
    assert not torch.equal(first.batch["responses"], other.batch["responses"])


def test_greedy_requests_carry_no_seed(monkeypatch):
    rollout = make(monkeypatch)
    rollout.reseed(5)
    greedy = prompts()
    greedy.meta_info["do_sample"] = False
    rollout.generate_sequences(greedy)
    assert generated(rollout.llm)[-1][2] == [None, None, None]


def test_request_seeds_distinct_across_dp_ranks_prompts_and_samples():
    from workers.rollout.vllm import request_seed

    n = 8  # the trainer reseeds DP rank d with step_seed + d
    seeds = [request_seed(1000 + d, i, n) + j for d in range(8) for i in range(512) for j in range(n)]
    assert len(set(seeds)) == len(seeds) and min(seeds) >= 0
    with pytest.raises(ValueError):
        request_seed(1, 0, 0)


# ------------------------------------------------------------------ weight loading (bucketed)
def test_bucketed_update_loads_each_bucket_with_one_load_weights_call(monkeypatch):
    rollout = make(monkeypatch, free_cache_engine=True)
    buckets = [[("embed.weight", torch.full((8, 4), 2.0))], [("head.weight", torch.full((8, 4), 3.0))]]
    rollout.update_weights_bucketed(iter(buckets))
    model = rollout.llm.model
    assert model.load_calls == [["embed.weight"], ["head.weight"]]
    assert model.store["embed.weight"].eq(2).all() and model.store["head.weight"].eq(3).all()
    assert [e[0] for e in rollout.llm.events].count("apply_model") == 2


def test_bucketed_update_drops_each_bucket_before_asking_for_the_next(monkeypatch):
    import weakref

    rollout = make(monkeypatch)
    freed_before_next: list[bool] = []

    def buckets():
        for name in ("embed.weight", "head.weight"):
            t = torch.ones(8, 4)
            ref = weakref.ref(t)
            yield [(name, t)]
            del t
            freed_before_next.append(ref() is None)   # resumed: the engine must hold nothing of it

    rollout.update_weights_bucketed(buckets())
    assert freed_before_next == [True, True]
