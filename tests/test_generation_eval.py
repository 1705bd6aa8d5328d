"""Generation / evaluation entry points and benchmark preparation.

* main_generation writes n responses per prompt, in part files that a rerun after a crash reuses;
  settings that changed between runs are refused; bad config/data fails early naming the key.
* main_eval on hand-made responses gives exactly the hand-computed mean@n / pass@k / maj@n, counts a
  hung scorer as a timeout, and names missing columns.
* dataset.math_benchmarks turns each shared jsonl into the documented number of rows with ground
  truths the math scorer accepts for the reference answers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from dataset import math_benchmarks as mb
from trainer import main_eval, main_generation
from trainer.plan import PlanError, compose_config

REPO = Path(__file__).resolve().parents[1]

PROMPTS = ["What is 1+1?", "What is 2+3?", "Compute 7*6.", "What is 10-4?", "Half of 9?"]
ANSWERS = ["2", "5", "42", "6", "\\frac{9}{2}"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from relift.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", max_position_embeddings=512)


@pytest.fixture
def prompts_file(tmp_path) -> Path:
    rows = [{"data_source": "math500", "prompt": [{"role": "user", "content": p}], "ability": "math",
             "reward_model": {"style": "rule", "ground_truth": a}, "extra_info": {"split": "test", "index": i}}
            for i, (p, a) in enumerate(zip(PROMPTS, ANSWERS))]
    path = tmp_path / "prompts.parquet"
    pd.DataFrame(rows).to_parquet(path)
    return path


def gen_cfg(model, data, out, *extra):
    return compose_config("generation", [f"data.path={data}", f"data.output_path={out}", f"model.path={model}",
                                         "data.n_samples=3", "data.batch_size=2", "data.max_prompt_length=64",
                                         "data.max_response_length=8", "trainer.device=cpu", *extra])


class CountingGroup:
    """Wraps a worker group: counts generate calls, optionally dies on the k-th one."""

    def __init__(self, inner, die_on_call: int | None = None):
        self.inner, self.die_on_call, self.calls = inner, die_on_call, 0

    def generate_sequences(self, batch):
        self.calls += 1
        if self.calls == self.die_on_call:
            raise RuntimeError("simulated crash")
        return self.inner.generate_sequences(batch)


# ------------------------------------------------------------------------------------------ generation


def test_generation_writes_n_responses_per_prompt_and_keeps_columns(tiny_model, prompts_file, tmp_path):
    torch.manual_seed(0)
    out = tmp_path / "out" / "gen.parquet"
    summary = main_generation.run_generation(gen_cfg(tiny_model, prompts_file, out))
    assert summary["num_chunks"] == 3 and summary["chunks_generated"] == 3 and summary["chunks_reused"] == 0
    df = pd.read_parquet(out)
    src = pd.read_parquet(prompts_file)
    assert list(df.columns) == list(src.columns) + ["responses", "response_lengths"]
    assert len(df) == 5
    assert [r["ground_truth"] for r in df["reward_model"]] == ANSWERS
    assert [m[0]["content"] for m in df["prompt"]] == PROMPTS
    for responses, lengths in zip(df["responses"], df["response_lengths"]):
        assert len(responses) == 3 and all(isinstance(r, str) for r in responses)
        assert len(lengths) == 3 and all(1 <= x <= 8 for x in lengths)
    parts = sorted(p.name for p in (tmp_path / "out" / "gen.parquet.parts").glob("part-*.parquet"))
    assert parts == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]


def test_generation_resumes_after_a_crash_without_regenerating_finished_chunks(tiny_model, prompts_file, tmp_path):
    out = tmp_path / "gen.parquet"
    cfg = gen_cfg(tiny_model, prompts_file, out)
    plan = main_generation.build_generation_plan(cfg)
    inner, cleanup = main_generation._start_workers(plan)
    try:
        crashing = CountingGroup(inner, die_on_call=2)
        with pytest.raises(RuntimeError, match="simulated crash"):
            main_generation.run_generation(cfg, group=crashing)
        parts = out.with_name("gen.parquet.parts")
        first = parts / "part-00000.parquet"
        assert first.exists() and not (parts / "part-00001.parquet").exists() and not out.exists()
        assert not list(parts.glob(".*.tmp-*"))
        stamp, content = first.stat().st_mtime_ns, first.read_bytes()

        counting = CountingGroup(inner)
        summary = main_generation.run_generation(cfg, group=counting)
        assert counting.calls == 2  # chunks 1 and 2 only
        assert summary["chunks_reused"] == 1 and summary["chunks_generated"] == 2
        assert first.stat().st_mtime_ns == stamp and first.read_bytes() == content
        df = pd.read_parquet(out)
        kept = pd.read_parquet(first)
        assert [list(r) for r in df["responses"][:2]] == [list(r) for r in kept["responses"]]
        assert all(len(r) == 3 for r in df["responses"]) and len(df) == 5

        idle = CountingGroup(inner, die_on_call=1)  # everything is done: must not generate at all
        summary = main_generation.run_generation(cfg, group=idle)
        assert idle.calls == 0 and summary["chunks_generated"] == 0 and summary["chunks_reused"] == 3
    finally:
        cleanup()


def test_generation_refuses_to_mix_runs_with_different_settings(tiny_model, prompts_file, tmp_path, capsys):
    out = tmp_path / "gen.parquet"
    main_generation.run_generation(gen_cfg(tiny_model, prompts_file, out))
    with pytest.raises(main_generation.ResumeMismatchError, match=r"n_samples: 3 -> 2.*delete that folder"):
        main_generation.run_generation(gen_cfg(tiny_model, prompts_file, out, "data.n_samples=2"))
    assert main_generation.run_main(gen_cfg(tiny_model, prompts_file, out, "rollout.temperature=1.0")) == 2
    assert "temperature: 0.6 -> 1.0" in capsys.readouterr().err


def test_generation_checks_config_and_data_first(tiny_model, prompts_file, tmp_path):
    out = tmp_path / "gen.parquet"
    with pytest.raises(PlanError) as err:
        main_generation.build_generation_plan(compose_config("generation", [f"data.path={tmp_path}/nope.parquet"]))
    msg = str(err.value)
    assert "data.path: file not found" in msg and "model.path is not set" in msg
    assert "data.output_path is not set" in msg

    with pytest.raises(PlanError, match=r"data.prompt_key: column 'question' not found.*columns there"):
        main_generation.build_generation_plan(gen_cfg(tiny_model, prompts_file, out, "data.prompt_key=question"))
    with pytest.raises(PlanError, match=r"trainer.backend=inprocess runs one worker"):
        main_generation.build_generation_plan(gen_cfg(tiny_model, prompts_file, out, "trainer.backend=inprocess",
                                                      "trainer.n_gpus_per_node=2"))
    with pytest.raises(PlanError, match=r"\(64\) \+ data.max_response_length \(500\) = 564 exceeds .*\(512\)"):
        main_generation.build_generation_plan(gen_cfg(tiny_model, prompts_file, out, "data.max_response_length=500"))
    # null response length: derived from the model's 512 positions
    plan = main_generation.build_generation_plan(gen_cfg(tiny_model, prompts_file, out,
                                                         "data.max_response_length=null"))
    assert plan.max_response_length == 512 - 64 and plan.response_length_derived and plan.num_prompts == 5
    # prompts over the limit: the row is named (chat template makes "What is 1+1?" > 8 tokens)
    with pytest.raises(PlanError, match=r"prompts.parquet row 0: the prompt \(column 'prompt' after the chat "
                                        r"template\) is \d+ tokens, over data.max_prompt_length=8 \(5 of 5"):
        main_generation.run_generation(gen_cfg(tiny_model, prompts_file, out, "data.max_prompt_length=8"))
    assert not out.exists()


@pytest.mark.ray
def test_generation_on_a_ray_worker_group_of_two(ray_local, tiny_model, prompts_file, tmp_path):
    out = tmp_path / "gen.parquet"
    cfg = gen_cfg(tiny_model, prompts_file, out, "trainer.n_gpus_per_node=2", "data.batch_size=3")
    summary = main_generation.run_generation(cfg)  # chunks of 3 and 2 prompts over 2 workers (padded)
    assert summary["num_chunks"] == 2
    df = pd.read_parquet(out)
    assert len(df) == 5 and all(len(r) == 3 for r in df["responses"])
    assert [r["ground_truth"] for r in df["reward_model"]] == ANSWERS


# ------------------------------------------------------------------------------------------ evaluation

HANG = "\\boxed{9^{9^{9^{9^{9}}}}}"  # sympy computes this power for ever -> reward timeout


def write_generations(path: Path) -> Path:
    rows = [
        ("math500", "4", ["\\boxed{4}", "\\boxed{7}", "\\boxed{7}", "\\boxed{7}"]),             # c=1, majority 7
        ("math500", "\\frac{1}{2}", ["so \\boxed{\\frac{1}{2}}", "\\boxed{0.5}", "\\boxed{1/2}",
                                     "\\boxed{\\frac12}"]),                                      # c=4
        ("aime24", "204", [HANG, "no answer", "\\boxed{203}", "\\boxed{204}"]),                 # c=1, tie -> 203
        ("aime24", "33", ["\\boxed{33}", "\\boxed{33}", "\\boxed{5}", "\\boxed{33}"]),           # c=3, majority 33
    ]
    pd.DataFrame([{"data_source": s, "reward_model": {"style": "rule", "ground_truth": gt}, "responses": r}
                  for s, gt, r in rows]).to_parquet(path)
    return path


def test_eval_gives_the_hand_computed_numbers(tmp_path, capsys):
    data = write_generations(tmp_path / "gen.parquet")
    cfg = compose_config("evaluation", [f"data.path={data}", "reward.num_workers=1", "reward.timeout=2"])
    payload = main_eval.evaluate(cfg)
    math500, aime = payload["per_source"]["math500"], payload["per_source"]["aime24"]
    # math500: c = 1, 4 of n = 4. pass@2 of c=1: 1 - C(3,2)/C(4,2) = 1/2
    assert math500["n"] == 4 and math500["num_prompts"] == 2
    assert math500["mean@4"] == pytest.approx((1 / 4 + 1) / 2)
    assert math500["pass@1"] == pytest.approx(0.625)
    assert math500["pass@2"] == pytest.approx((0.5 + 1) / 2)
    assert math500["pass@4"] == pytest.approx(1.0)
    assert math500["maj@4"] == pytest.approx(0.5)
    # aime24: c = 1, 3. pass@2 of c=3: n - c = 1 < 2 -> 1
    assert aime["mean@4"] == pytest.approx(0.5) and aime["pass@1"] == pytest.approx(0.5)
    assert aime["pass@2"] == pytest.approx(0.75) and aime["pass@4"] == pytest.approx(1.0)
    assert aime["maj@4"] == pytest.approx(0.5)
    assert aime["timeouts"] == 1 and math500["timeouts"] == 0 and payload["timeouts"] == 1
    assert payload["num_samples"] == 16 and payload["errors"] == 0
    assert payload["average"]["mean@4"] == pytest.approx((0.625 + 0.5) / 2)
    assert payload["metrics"]["val-core/math500/acc/pass@2"] == pytest.approx(0.75)

    out = capsys.readouterr().out
    assert "| data_source | prompts | n | mean@n | pass@1 | pass@2 | pass@4 | maj@n |" in out
    assert "| math500 | 2 | 4 | 62.5 | 62.5 | 75.0 | 100.0 | 50.0 |" in out
    assert "| aime24 | 2 | 4 | 50.0 | 50.0 | 75.0 | 100.0 | 50.0 |" in out
    assert "1 reward timeouts" in out
    saved = json.loads((tmp_path / "gen.json").read_text())
    assert saved["per_source"]["math500"]["pass@2"] == pytest.approx(0.75)
    scores = pd.read_parquet(tmp_path / "gen.scores.parquet")
    assert len(scores) == 16 and scores["correct"].sum() == 1 + 4 + 1 + 3 and scores["timeout"].sum() == 1


def test_eval_names_missing_columns_and_bad_rows(tmp_path, capsys):
    path = tmp_path / "bad.parquet"
    pd.DataFrame({"data_source": ["math500"], "reward_model": [{"ground_truth": "1"}],
                  "answers": [["\\boxed{1}"]]}).to_parquet(path)
    cfg = compose_config("evaluation", [f"data.path={path}"])
    assert main_eval.run_main(cfg) == 2
    err = capsys.readouterr().err
    assert "['responses'] missing" in err and "available columns" in err and "answers" in err

    pd.DataFrame({"data_source": ["math500"], "reward_model": [{"style": "rule"}],
                  "responses": [["\\boxed{1}"]]}).to_parquet(path)
    with pytest.raises(PlanError, match=r"bad.parquet row 0: column 'reward_model' lacks key\(s\) \['ground_truth'\]"):
        main_eval.evaluate(cfg)
    pd.DataFrame({"data_source": ["no_such_source"], "reward_model": [{"ground_truth": "1"}],
                  "responses": [["\\boxed{1}"]]}).to_parquet(path)
    with pytest.raises(PlanError, match="no reward function for data_source 'no_such_source'"):
        main_eval.evaluate(compose_config("evaluation", [f"data.path={path}", "reward.num_workers=1"]))
    with pytest.raises(PlanError, match="data.path: file not found"):
        main_eval.evaluate(compose_config("evaluation", [f"data.path={tmp_path}/missing.parquet"]))


# ------------------------------------------------------------------------------------------ benchmarks


def reference_response(name: str, raw: dict) -> str:
    """A response holding the benchmark's own reference answer, as a model would box it."""
    if name == "minerva_math":
        return raw["solution"]  # the full reference solution, which ends in a \boxed answer
    if name == "olympiadbench":
        return "\\boxed{" + raw["final_answer"][0].replace("$", "") + "}"
    return "\\boxed{" + str(raw["answer"]) + "}"


@pytest.mark.parametrize("name,rows", sorted(mb.EXPECTED_ROWS.items()))
def test_benchmark_conversion_rows_and_ground_truth(shared_data, name, rows):
    from relift.rewards import get_reward_fn
    from relift.rewards.math import compute_score

    src = shared_data / "benchmarks" / f"{name}.jsonl"
    df = mb.convert_benchmark(name, src)
    assert len(df) == rows == mb.EXPECTED_ROWS[name]
    assert list(df.columns) == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
    assert set(df["data_source"]) == {name}
    get_reward_fn(name)  # the registry knows the name
    raw = mb.read_jsonl(src)
    question = raw[0].get("problem") or raw[0]["question"]
    msg = df["prompt"].iloc[0]
    assert len(msg) == 1 and msg[0]["role"] == "user"
    suffix = "\nLet's think step by step and output the final answer within \\boxed{}."
    assert msg[0]["content"] == question.strip() + suffix
    assert [e["index"] for e in df["extra_info"]] == list(range(rows))
    step = max(1, rows // 10)
    for i in range(0, rows, step):
        truth = df["reward_model"].iloc[i]["ground_truth"]
        assert isinstance(truth, str) and truth and "$" not in truth
        assert compute_score(reference_response(name, raw[i]), truth) == 1.0, (i, truth)
        assert compute_score("\\boxed{-98765}", truth) == 0.0, (i, truth)


def test_benchmark_prep_options_and_errors(shared_data, tmp_path):
    src = shared_data / "benchmarks"
    written = mb.write_benchmarks(src, tmp_path, ["amc23", "aime24"], template="Q: {problem}\nA: \\boxed{}?",
                                  system_prompt="Be brief.", limit=3)
    df = pd.read_parquet(written["amc23"])
    assert len(df) == 3
    assert [m["role"] for m in df["prompt"].iloc[0]] == ["system", "user"]
    user = df["prompt"].iloc[0][1]["content"]
    assert user.startswith("Q: ") and user.endswith("A: \\boxed{}?")
    assert df["reward_model"].iloc[0]["ground_truth"] == "27"  # the raw 27.0
    with pytest.raises(ValueError, match=r"must contain '\{problem\}'"):
        mb.convert_benchmark("aime24", src / "aime24.jsonl", template="no placeholder")
    with pytest.raises(ValueError, match="unknown benchmark 'gsm9k'; known: aime24"):
        mb.write_benchmarks(src, tmp_path, ["gsm9k"])
    with pytest.raises(FileNotFoundError, match="aime24.jsonl"):
        mb.write_benchmarks(tmp_path / "empty", tmp_path, ["aime24"])
    bad = tmp_path / "math500.jsonl"
    bad.write_text(json.dumps({"problem": "1+1?", "solution": "2"}) + "\n")
    with pytest.raises(ValueError, match=r"math500.jsonl row 0: no reference answer \(answer\)"):
        mb.convert_benchmark("math500", bad)


def test_eval_script_end_to_end_on_cpu(shared_data, tiny_model, tmp_path):
    env = {**os.environ, "MODEL_PATH": str(tiny_model), "BENCH_DIR": str(shared_data / "benchmarks"),
           "BENCHMARKS": "math500,aime24", "LIMIT": "2", "N_SAMPLES": "2", "MAX_RESPONSE_LENGTH": "8",
           "MAX_PROMPT_LENGTH": "500", "TRUNCATION": "left", "OUT_DIR": str(tmp_path / "eval"), "REWARD_WORKERS": "1",
           "ROLLOUT": "hf", "N_GPUS": "1", "RELIFT_VENV": str(Path(sys.executable).parent.parent)}
    proc = subprocess.run(["sh", str(REPO / "eval_scripts" / "eval_math.sh"), "trainer.device=cpu"], env=env,
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| math500 | 2 | 2 |" in proc.stdout and "| aime24 | 2 | 2 |" in proc.stdout
    result = json.loads((tmp_path / "eval" / "gen_math500-aime24_n2_t0.6_p0.95_limit2.json").read_text())
    assert set(result["per_source"]) == {"math500", "aime24"} and result["num_samples"] == 8
