"""Already-templated prompts are used as is; a prompt's opened <think> reaches the scorer's format check."""

from __future__ import annotations

import logging

import pandas as pd
import pytest
import torch

from relift.data.common import render_prompt
from relift.data.rl_dataset import RLDataset
from relift.data.templated import templated_text
from relift.models.tiny import build_tiny_tokenizer
from relift.protocol import DataProto
from relift.rewards.kk_prompts import make_prompt
from relift.rewards.prefill import prefill_from_prompt_cell, prompt_prefills, think_prefill

GT = {"solution_text_format": "(1) Zoey is a knight\n(2) Oliver is a knave", "statements": "()"}
ANSWER = "<answer>(1) Zoey is a knight\n(2) Oliver is a knave</answer>"
QUIZ = "You meet 2 inhabitants: Zoey, and Oliver. Zoey said that Oliver is a knave. So who is who?"


@pytest.fixture(scope="module")
def tok():
    return build_tiny_tokenizer()


def test_detection_rules(tok):
    chatml = make_prompt(QUIZ, "instruct")
    assert templated_text([{"role": "user", "content": chatml}], tok) == chatml
    assert templated_text(chatml) == chatml                                    # a templated string
    assert templated_text("[INST] hi [/INST]") == "[INST] hi [/INST]"
    assert templated_text([{"role": "user", "content": QUIZ}], tok) is None    # plain: needs the template
    assert templated_text(make_prompt(QUIZ, "base")) is None                   # base prompt: no template tokens
    two = [{"role": "system", "content": "<|im_start|>"}, {"role": "user", "content": QUIZ}]
    assert templated_text(two, tok) is None                                    # only single messages


def test_render_prompt_never_templates_twice(tok, caplog):
    chatml = make_prompt(QUIZ, "compact")
    with caplog.at_level(logging.WARNING, logger="relift.data.templated"):
        for flag in (True, False):
            assert render_prompt(tok, [{"role": "user", "content": chatml}], flag) == chatml
    plain = render_prompt(tok, [{"role": "user", "content": QUIZ}], True)
    assert plain == f"<|im_start|>user\n{QUIZ}<|im_end|>\n<|im_start|>assistant\n"


def test_rl_dataset_uses_templated_rows_as_is(tmp_path, tok):
    chatml = make_prompt(QUIZ, "compact")
    rows = [{"data_source": "kk_logic", "prompt": [{"role": "user", "content": chatml}],
             "reward_model": {"ground_truth": GT}},
            {"data_source": "kk_logic", "prompt": chatml, "reward_model": {"ground_truth": GT}},  # a string column
            {"data_source": "kk_logic", "prompt": [{"role": "user", "content": QUIZ}],
             "reward_model": {"ground_truth": GT}}]
    for i, row in enumerate(rows):
        pd.DataFrame([row]).to_parquet(tmp_path / f"r{i}.parquet")
    ds = RLDataset([str(tmp_path / f"r{i}.parquet") for i in range(3)], tok, max_prompt_length=256)
    decoded = [tok.decode(ds[i]["input_ids"][ds[i]["attention_mask"].bool()]) for i in range(3)]
    assert decoded[0] == decoded[1] == chatml
    assert decoded[2] == f"<|im_start|>user\n{QUIZ}<|im_end|>\n<|im_start|>assistant\n"


def test_think_prefill():
    assert think_prefill("...<|im_start|>assistant\n<think>") == "<think>"
    assert think_prefill("Assistant: <think>\n") == "<think>\n"
    assert think_prefill("<think> a </think> b") == ""
    assert think_prefill("say <think> then go") == ""
    assert think_prefill("no tag") == ""
    assert prefill_from_prompt_cell([{"role": "user", "content": make_prompt(QUIZ)}]) == "<think>"
    assert prefill_from_prompt_cell(make_prompt(QUIZ, "base")) == "<think>"
    assert prefill_from_prompt_cell([{"role": "user", "content": QUIZ + " <think>"}]) == ""  # not templated


def _rollout(tok, prompts: list[str], responses: list[str], P: int = 320, R: int = 96) -> DataProto:
    pad, eos = tok.pad_token_id, tok.eos_token_id
    p_ids = torch.full((len(prompts), P), pad)
    r_ids = torch.full((len(prompts), R), pad)
    mask = torch.zeros(len(prompts), P + R, dtype=torch.long)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        a = tok(p, add_special_tokens=False)["input_ids"]
        b = tok(r, add_special_tokens=False)["input_ids"] + [eos]
        p_ids[i, P - len(a):] = torch.tensor(a)
        r_ids[i, :len(b)] = torch.tensor(b)
        mask[i, P - len(a):P + len(b)] = 1
    n = len(prompts)
    return DataProto.from_dict({"prompts": p_ids, "responses": r_ids, "attention_mask": mask,
                                "response_mask": mask[:, P:]},
                               {"data_source": ["kk_logic"] * n, "reward_model": [{"ground_truth": GT}] * n})


def test_prompt_prefills_read_the_batch(tok):
    data = _rollout(tok, [make_prompt(QUIZ, "compact"), f"<|im_start|>user\n{QUIZ}<|im_end|>\n"], ["a", "b"])
    P = data.batch["prompts"].shape[1]
    assert prompt_prefills(tok, data.batch["prompts"], data.batch["attention_mask"][:, :P]) == ["<think>", ""]


def test_reward_worker_scores_prefill_plus_response(tok):
    from relift.rewards import RewardPool
    from workers.reward_worker import score_batch

    pre = make_prompt(QUIZ, "compact")            # ends with <think>
    rows = [(pre, f"reasoning </think>{ANSWER}"),  # right: the prefill opens the thought -> 3
            (pre, f"<think>again</think>{ANSWER}"),  # a second <think>: format fails -> -3 (Logic-RL)
            (pre, "reasoning </think><answer>(1) Zoey is a knave\n(2) Oliver is a knave</answer>")]  # -0.5
    data = _rollout(tok, [p for p, _ in rows], [r for _, r in rows])
    with RewardPool(num_workers=1, timeout=20) as pool:
        out = score_batch(data, tok, pool)
    assert out.batch["token_level_scores"].sum(-1).tolist() == [3.0, -3.0, -0.5]
    assert list(out.non_tensor_batch["format"]) == [True, False, True]


def test_main_eval_counts_the_prefill(tmp_path):
    from trainer.main_eval import collect_samples

    row = {"data_source": "kk_logic", "prompt": [{"role": "user", "content": make_prompt(QUIZ)}],
           "reward_model": {"ground_truth": GT}, "responses": [f"r </think>{ANSWER}", f"<think>r</think>{ANSWER}"]}
    plain = dict(row, prompt=[{"role": "user", "content": QUIZ}])
    pd.DataFrame([row, plain]).to_parquet(tmp_path / "gen.parquet")
    samples = collect_samples(str(tmp_path / "gen.parquet"))
    assert [s.response for s in samples] == [f"<think>r </think>{ANSWER}", f"<think><think>r</think>{ANSWER}",
                                             f"r </think>{ANSWER}", f"<think>r</think>{ANSWER}"]
    from relift.rewards import kk
    assert [kk.compute_score(s.response, GT) for s in samples[:2]] == [3.0, -3.0]
