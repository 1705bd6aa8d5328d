"""The vLLM adapter's request building, on CPU, against a stand-in ``vllm`` module.

Real vLLM needs a GPU (``tests/test_rollout_hf.py::test_vllm_greedy_matches_hf_and_weight_sync`` runs
it when there is one). Here a fake ``LLM`` records the ``SamplingParams`` it gets and samples from
``random.Random(seed)``, as vLLM's per-request seeds do, so the test checks what the adapter asks for:
one distinct seed per prompt after ``reseed``, the same samples for the same seed, no seed when greedy.
"""

from __future__ import annotations

import random
import sys
import types
from types import SimpleNamespace

import pytest
import torch

from relift.protocol import DataProto

EOS = 2


class FakeSamplingParams:
    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.n = kwargs["n"]


class FakeLLM:
    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.calls: list[list[FakeSamplingParams]] = []

    def get_tokenizer(self):
        return SimpleNamespace(eos_token_id=EOS, pad_token_id=0)

    def sleep(self, level: int = 1) -> None:
        pass

    def wake_up(self, tags=None) -> None:
        pass

    def generate(self, prompts, sampling_params, use_tqdm=False):
        params = sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(prompts)
        assert len(params) == len(prompts)
        self.calls.append(params)
        out = []
        for sp in params:
            rng = random.Random(sp.kwargs.get("seed"))        # no seed: fresh entropy, like vLLM
            comps = [SimpleNamespace(token_ids=[rng.randint(3, 60) for _ in range(4)] + [EOS], logprobs=None)
                     for _ in range(sp.n)]
            out.append(SimpleNamespace(outputs=comps))
        return out


@pytest.fixture
def rollout(monkeypatch):
    fake = types.ModuleType("vllm")
    fake.LLM, fake.SamplingParams = FakeLLM, FakeSamplingParams
    monkeypatch.setitem(sys.modules, "vllm", fake)
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    from workers.rollout.vllm import VLLMRollout

    return VLLMRollout("fake-model", {"n": 2, "prompt_length": 4, "response_length": 8, "temperature": 1.0,
                                      "seed": 3, "free_cache_engine": False})


def prompts() -> DataProto:
    ids = torch.tensor([[0, 0, 5, 6], [0, 7, 8, 9], [4, 5, 6, 7]])
    mask = (ids != 0).long()
    return DataProto.from_dict({"input_ids": ids, "attention_mask": mask,
                                "position_ids": (mask.cumsum(-1) - 1).clamp(min=0)})


def test_reseed_gives_each_prompt_its_own_seed_and_repeats_samples(rollout):
    from workers.rollout.vllm import request_seed

    assert rollout.llm.kwargs["seed"] == 3                    # the engine seed comes from the config
    rollout.generate_sequences(prompts())
    assert "seed" not in rollout.llm.calls[-1][0].kwargs      # not reseeded yet: vLLM's own RNG

    assert rollout.reseed(5) is True
    first = rollout.generate_sequences(prompts())
    seeds = [sp.kwargs["seed"] for sp in rollout.llm.calls[-1]]
    assert seeds == [request_seed(5, i) for i in range(3)] and len(set(seeds)) == 3
    assert first.batch["responses"].shape == (6, 8)
    rollout.reseed(5)
    again = rollout.generate_sequences(prompts())
    assert torch.equal(first.batch["responses"], again.batch["responses"])
    rollout.reseed(6)
    other = rollout.generate_sequences(prompts())
    assert not set(seeds) & {sp.kwargs["seed"] for sp in rollout.llm.calls[-1]}
    assert not torch.equal(first.batch["responses"], other.batch["responses"])


def test_greedy_requests_carry_no_seed(rollout):
    rollout.reseed(5)
    greedy = prompts()
    greedy.meta_info["do_sample"] = False
    rollout.generate_sequences(greedy)
    params = rollout.llm.calls[-1]
    assert len({id(sp) for sp in params}) == 1                # one SamplingParams shared by all prompts
    assert params[0].kwargs["temperature"] == 0.0 and "seed" not in params[0].kwargs


def test_request_seeds_are_distinct_across_ranks_and_prompts():
    from workers.rollout.vllm import request_seed

    # the trainer reseeds rank r with step_seed + r: neighbouring ranks must not share request seeds
    seeds = {request_seed(1000 + rank, i) for rank in range(8) for i in range(4096)}
    assert len(seeds) == 8 * 4096 and all(0 <= s < 2**31 - 1 for s in seeds)
