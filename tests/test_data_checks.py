"""Data errors stop the plan (issue 13 item 5): every row of train and val files, before any model loads.

Each test writes small parquet files with one known defect and asserts the plan problem names the
config key, the file, the row and the column; the entry-point tests run ``python -m trainer.main_rl``
in a subprocess and check exit status 2, no traceback, and that no model was loaded (the model folder
has a tokenizer and a config but no weights, so reaching the model would fail differently).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from relift.data.validate import check_rl_files
from trainer.plan import PlanError, build_offline_plan, build_rl_plan, compose_config
from trainer.plan.generation import build_generation_plan

REPO = Path(__file__).resolve().parents[1]
SHARED = Path("/work/shared/data")
# the tiny tokenizer is byte-level: one token per byte. ChatML prompt of one user message:
# <|im_start|> "user\n" CONTENT <|im_end|> "\n" <|im_start|> "assistant\n" = 19 tokens + len(CONTENT)
CHATML_OVERHEAD = 1 + 5 + 1 + 1 + 1 + 10


def rl_row(q: str = "1+1?", source: str = "math", truth: object = "2") -> dict:
    return {"data_source": source, "prompt": [{"role": "user", "content": q}],
            "reward_model": {"style": "rule", "ground_truth": truth}, "extra_info": {"index": 0}}


def write(path: Path, rows: list[dict]) -> str:
    pd.DataFrame(rows).to_parquet(path)
    return str(path)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    """A model folder with the tiny tokenizer and a config.json, but no weights."""
    from relift.models.tiny import build_tiny_tokenizer

    d = tmp_path_factory.mktemp("tok_only")
    build_tiny_tokenizer().save_pretrained(d)
    (d / "config.json").write_text(json.dumps({"model_type": "qwen2", "max_position_embeddings": 1024}))
    return str(d)


def rl_cfg(train: str, model: str, *overrides: str):
    return compose_config("rl_trainer", [f"data.train_files={train}", f"actor_rollout_ref.model.path={model}",
                                         "trainer.device=cpu", *overrides])


def plan_problems(cfg, build=build_rl_plan) -> str:
    with pytest.raises(PlanError) as ei:
        build(cfg)
    return str(ei.value)


# ------------------------------------------------------------------------------------------------ RL rows


def test_clean_files_pass_and_lengths_are_checked(tmp_path, model_dir):
    train = write(tmp_path / "train.parquet", [rl_row(q=f"{i}+1?") for i in range(40)])
    plan = build_rl_plan(rl_cfg(train, model_dir, f"data.val_files={train}"))
    assert not [w for w in plan.warnings if "data." in w and "not checked" in w]


def test_unknown_data_source_on_one_row_of_thousands(tmp_path, model_dir):
    rows = [rl_row() for _ in range(3000)]
    rows[2718] = rl_row(source="my_new_benchmark")
    train = write(tmp_path / "train.parquet", rows)
    msg = plan_problems(rl_cfg(train, model_dir))
    assert f"data.train_files: {train} row 2718: column 'data_source' is 'my_new_benchmark'" in msg
    assert "(1 row)" in msg and "register_reward('my_new_benchmark')" in msg


def test_unknown_data_source_in_val_only_and_a_close_name(tmp_path, model_dir):
    train = write(tmp_path / "train.parquet", [rl_row()] * 8)
    val = write(tmp_path / "val.parquet", [rl_row(), rl_row(source="gsm8kk"), rl_row(source="gsm8kk")])
    msg = plan_problems(rl_cfg(train, model_dir, f"data.val_files={val}"))
    assert f"data.val_files: {val} row 1: column 'data_source' is 'gsm8kk'" in msg
    assert "(2 rows)" in msg and "close known names: gsm8k" in msg
    assert "data.train_files" not in msg


def test_many_unknown_sources_are_counted_not_listed():
    from relift.data.validate import unknown_source_problems
    from relift.rewards.registry import get_reward_fn, known_data_sources

    sources = {f"id_{i}": (2, f"f.parquet row {2 * i}") for i in range(40)} | {"math": (7, "f.parquet row 80")}
    lines = unknown_source_problems("data.train_files", sources, known_data_sources(), get_reward_fn)
    assert len(lines) == 6 and lines[0].startswith("data.train_files: f.parquet row 0: column 'data_source' is 'id_0'")
    assert lines[-1] == ("data.train_files: 35 more 'data_source' values have no reward function (70 rows), "
                         "e.g. 'id_5', 'id_6', 'id_7'")


def test_custom_reward_function_scores_every_source(tmp_path, model_dir):
    fn = tmp_path / "score.py"
    fn.write_text("def compute_score(data_source, solution_str, ground_truth, extra_info=None):\n    return 0.0\n")
    train = write(tmp_path / "train.parquet", [rl_row(source="anything")] * 8)
    plan = build_rl_plan(rl_cfg(train, model_dir, f"reward.custom_reward_function.path={fn}"))
    assert plan.reward.custom_reward_function is not None


def test_reward_fn_key_names_the_source_column(tmp_path, model_dir):
    rows = [dict(rl_row(), scorer="nope") for _ in range(4)]
    train = write(tmp_path / "train.parquet", rows)
    msg = plan_problems(rl_cfg(train, model_dir, "data.reward_fn_key=scorer"))
    assert f"{train} row 0: column 'scorer' is 'nope'" in msg and "(4 rows)" in msg


def test_missing_prompt_column(tmp_path, model_dir):
    rows = [{k: v for k, v in rl_row().items() if k != "prompt"} | {"question": "1+1?"} for _ in range(4)]
    train = write(tmp_path / "train.parquet", rows)
    msg = plan_problems(rl_cfg(train, model_dir))
    assert f"data.train_files: {train} has no column 'prompt'" in msg and "question" in msg
    # the same file with the right key passes the column check (then fails on the prompt's type: a string)
    msg = plan_problems(rl_cfg(train, model_dir, "data.prompt_key=question"))
    assert f"{train} row 0: column 'question' must be a list of chat messages" in msg and "(4 of 4 rows" in msg


def test_ill_typed_prompt_and_reward_model_rows(tmp_path, model_dir):
    rows = [rl_row() for _ in range(10)]
    rows[3]["prompt"] = [{"role": "user", "text": "no content key"}]
    rows[6]["prompt"] = [{"role": "user", "text": "again"}]
    train = write(tmp_path / "train.parquet", rows)
    msg = plan_problems(rl_cfg(train, model_dir))
    assert f"{train} row 3: column 'prompt' message 0 must be a dict with str 'role' and str 'content'" in msg
    assert "(2 of 10 rows in this file)" in msg and "row 6" not in msg  # one line per check, with the count
    # a parquet struct cannot lack one row's key: a layout without ground_truth fails on every row
    rows = [dict(rl_row(), reward_model={"style": "rule", "answer": "2"}) for _ in range(3)]
    train = write(tmp_path / "no_gt.parquet", rows)
    msg = plan_problems(rl_cfg(train, model_dir))
    assert f"{train} row 0: column 'reward_model' lacks key(s) ['ground_truth']; it has ['answer', 'style']" in msg
    # verl-style JSON strings instead of a struct
    rows = [dict(rl_row(), reward_model=json.dumps({"ground_truth": "2"})) for _ in range(3)]
    train = write(tmp_path / "str_gt.parquet", rows)
    msg = plan_problems(rl_cfg(train, model_dir))
    assert f"{train} row 0: column 'reward_model' must be a dict (parquet struct), got str" in msg


def test_all_none_ground_truth_is_an_error_naming_the_column(tmp_path, model_dir):
    train = write(tmp_path / "train.parquet", [rl_row(truth=None) for _ in range(6)])
    msg = plan_problems(rl_cfg(train, model_dir))
    assert "data.train_files: column 'reward_model.ground_truth' is None on every row (6 rows" in msg
    assert f"{train} row 0" in msg


def test_some_none_ground_truth_is_a_warning_naming_first_rows(tmp_path, model_dir):
    rows = [rl_row() for _ in range(10)]
    for i in (2, 5, 6, 9):
        rows[i] = rl_row(truth=None)
    train = write(tmp_path / "train.parquet", rows)
    plan = build_rl_plan(rl_cfg(train, model_dir))
    (warning,) = [w for w in plan.warnings if "ground_truth" in w]
    assert "4 of 10 rows" in warning
    assert f"{train} row 2; {train} row 5; {train} row 6)" in warning and "row 9" not in warning


def test_all_none_ground_truth_with_a_custom_reward_is_a_warning(tmp_path, model_dir):
    fn = tmp_path / "score.py"
    fn.write_text("def compute_score(data_source, solution_str, ground_truth, extra_info=None):\n    return 1.0\n")
    train = write(tmp_path / "train.parquet", [rl_row(truth=None)] * 4)
    plan = build_rl_plan(rl_cfg(train, model_dir, f"reward.custom_reward_function.path={fn}"))
    assert any("None on every row" in w for w in plan.warnings)


# ------------------------------------------------------------------------------------------------ files


@pytest.mark.faults
def test_corrupt_empty_and_non_parquet_files(tmp_path, model_dir):
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1" + b"\x00garbage" * 50)
    msg = plan_problems(rl_cfg(str(corrupt), model_dir))
    assert f"data.train_files: {corrupt} is not a readable parquet file" in msg

    empty = tmp_path / "empty.parquet"
    pd.DataFrame({"data_source": pd.Series([], dtype=str), "prompt": pd.Series([], dtype=object),
                  "reward_model": pd.Series([], dtype=object)}).to_parquet(empty)
    msg = plan_problems(rl_cfg(str(empty), model_dir))
    assert f"data.train_files: {empty} has no rows" in msg

    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text(json.dumps(rl_row()) + "\n")
    msg = plan_problems(rl_cfg(str(jsonl), model_dir))
    assert f"{jsonl} is not a readable parquet file (relift reads parquet; convert it" in msg


def test_one_bad_file_in_a_list_is_named(tmp_path, model_dir):
    good = write(tmp_path / "a.parquet", [rl_row()] * 4)
    bad = write(tmp_path / "b.parquet", [rl_row(), rl_row(source=""), rl_row()])
    msg = plan_problems(rl_cfg(f"[{good},{bad}]", model_dir))
    assert f"{bad} row 1: column 'data_source' must be a non-empty string" in msg and good not in msg


# ------------------------------------------------------------------------------------------------ lengths


def test_over_long_prompt_named_with_its_token_count(tmp_path, model_dir):
    rows = [rl_row(q="x" * 10) for _ in range(20)]
    rows[13] = rl_row(q="y" * 50)
    rows[17] = rl_row(q="z" * 60)
    train = write(tmp_path / "train.parquet", rows)
    limit = CHATML_OVERHEAD + 40
    msg = plan_problems(rl_cfg(train, model_dir, f"data.max_prompt_length={limit}"))
    assert (f"data.train_files: {train} row 13: the prompt (column 'prompt' after the chat template) is "
            f"{CHATML_OVERHEAD + 50} tokens, over data.max_prompt_length={limit} (2 of 20 rows are over)") in msg
    # exactly at the limit passes: the check is '>' like the dataset's
    build_rl_plan(rl_cfg(train, model_dir, f"data.max_prompt_length={CHATML_OVERHEAD + 60}"))
    # filter: a warning with the count; every row over: nothing left, an error
    plan = build_rl_plan(rl_cfg(train, model_dir, f"data.max_prompt_length={limit}", "data.truncation=filter"))
    assert any("2 of 20 prompts are over" in w and "dropped" in w for w in plan.warnings)
    msg = plan_problems(rl_cfg(train, model_dir, "data.max_prompt_length=5", "data.truncation=filter"))
    assert "every prompt is over data.max_prompt_length=5" in msg
    # left/right: over-long prompts are cut when fetched, nothing can fail, so the plan does not measure
    plan = build_rl_plan(rl_cfg(train, model_dir, "data.max_prompt_length=5", "data.truncation=left"))
    assert not any("prompts are over" in w for w in plan.warnings)


def test_no_local_tokenizer_skips_lengths_with_a_warning(tmp_path):
    cfg_only = tmp_path / "cfg_only"
    cfg_only.mkdir()
    (cfg_only / "config.json").write_text(json.dumps({"max_position_embeddings": 1024}))
    train = write(tmp_path / "train.parquet", [rl_row(q="x" * 500)] * 4)
    plan = build_rl_plan(rl_cfg(train, str(cfg_only), "data.max_prompt_length=8"))
    assert any("prompt lengths not checked at plan time" in w for w in plan.warnings)
    # without a tokenizer a plain-string prompt cannot be told from a templated one: a warning, not an error
    train = write(tmp_path / "strings.parquet", [dict(rl_row(), prompt="1+1?")] * 3)
    plan = build_rl_plan(rl_cfg(train, str(cfg_only)))
    assert any(f"{train} row 0: column 'prompt' is a plain string" in w and "(3 of 3 rows" in w for w in plan.warnings)


# ------------------------------------------------------------------------------------------------ offline


def off_cfg(train: str, model: str, *overrides: str):
    return compose_config("offline_trainer", [f"data.train_files={train}", f"model.path={model}",
                                              "trainer.device=cpu", *overrides])


def test_offline_sft_missing_and_ill_typed_columns(tmp_path, model_dir):
    rows = [{"prompt": "q", "answer": "a"}] * 3
    train = write(tmp_path / "sft.parquet", rows)
    msg = plan_problems(off_cfg(train, model_dir, "data.kind=sft", "loss.type=sft"), build_offline_plan)
    assert f"data.train_files: {train} has no column 'target'" in msg
    rows = [{"prompt": "q", "target": "a"}, {"prompt": "q", "target": None}, {"prompt": "q", "target": None}]
    train = write(tmp_path / "sft2.parquet", rows)
    msg = plan_problems(off_cfg(train, model_dir, "data.kind=sft", "loss.type=sft"), build_offline_plan)
    assert f"{train} row 1: column 'target' is empty (None) (2 of 3 rows in this file)" in msg
    train = write(tmp_path / "sft3.parquet", [{"prompt": "q", "target": 7}] * 2)  # a column has one type
    msg = plan_problems(off_cfg(train, model_dir, "data.kind=sft", "loss.type=sft"), build_offline_plan)
    assert f"{train} row 0: column 'target' must be a string or a list of messages, got int" in msg


def test_offline_pairs_layouts(tmp_path, model_dir):
    conv = [{"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
             "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "b"}]}] * 4
    ok = write(tmp_path / "pairs.parquet", conv)
    build_offline_plan(off_cfg(ok, model_dir, "data.kind=pairs", "loss.type=redi"))
    rows = [{"prompt": "q", "chosen": "a", "rejected": [{"role": "assistant", "content": "b"}]} for _ in range(5)]
    rows[4]["rejected"] = [{"role": "user", "content": "not an answer"}]
    bad = write(tmp_path / "pairs_bad.parquet", rows)
    msg = plan_problems(off_cfg(bad, model_dir, "data.kind=pairs", "loss.type=redi"), build_offline_plan)
    assert f"{bad} row 4: column 'rejected' must end with an assistant message" in msg


def test_offline_sequence_lengths_agree_with_the_dataset(tmp_path, model_dir):
    from relift.data import SFTDataset
    from relift.models.loading import load_tokenizer

    # prompt "q": 19 + 1 tokens; completion "a"*k + <|im_end|> "\n": k + 2; EOS: 1 -> 23 + k
    rows = [{"prompt": "q", "target": "a" * 10} for _ in range(6)]
    rows[4]["target"] = "a" * 30
    train = write(tmp_path / "sft.parquet", rows)
    limit = 23 + 20
    msg = plan_problems(off_cfg(train, model_dir, "data.kind=sft", "loss.type=sft", f"data.max_length={limit}"),
                        build_offline_plan)
    assert (f"data.train_files: {train} row 4: prompt + target + EOS is {23 + 30} tokens, over "
            f"data.max_length={limit} (1 of 6 rows are over)") in msg
    with pytest.raises(ValueError, match=f"row 4: prompt \\+ response \\+ EOS is {23 + 30} tokens"):
        SFTDataset(train, load_tokenizer(model_dir), max_length=limit, truncation="error")
    plan = build_offline_plan(off_cfg(train, model_dir, "data.kind=sft", "loss.type=sft", f"data.max_length={limit}",
                                      "data.truncation=filter"))
    assert any("1 of 6 rows are over data.max_length=43 and will be dropped" in w for w in plan.warnings)


# ------------------------------------------------------------------------------------------------ generation


def gen_cfg(path: str, model: str, out: Path, *overrides: str):
    return compose_config("generation", [f"data.path={path}", f"data.output_path={out}", f"model.path={model}",
                                         "trainer.device=cpu", *overrides])


def test_generation_prompts_typed_and_measured(tmp_path, model_dir):
    rows = [{"prompt": [{"role": "user", "content": "q"}]}, {"prompt": []}, {"prompt": []}]
    bad = write(tmp_path / "prompts.parquet", rows)
    msg = plan_problems(gen_cfg(bad, model_dir, tmp_path / "out.parquet"), build_generation_plan)
    assert f"data.path: {bad} row 1: column 'prompt' is an empty list of messages (2 of 3 rows" in msg
    bad = write(tmp_path / "ints.parquet", [{"prompt": 12}])
    msg = plan_problems(gen_cfg(bad, model_dir, tmp_path / "out.parquet"), build_generation_plan)
    assert f"data.path: {bad} row 0: column 'prompt' must be a list of chat messages" in msg
    long = write(tmp_path / "long.parquet", [{"prompt": "x" * 5}, {"prompt": "x" * 30}])
    msg = plan_problems(gen_cfg(long, model_dir, tmp_path / "out.parquet",
                                f"data.max_prompt_length={CHATML_OVERHEAD + 10}", "data.max_response_length=8"),
                        build_generation_plan)
    assert f"{long} row 1: the prompt (column 'prompt' after the chat template) is {CHATML_OVERHEAD + 30}" in msg
    assert "data.truncation=left|right" in msg


# ------------------------------------------------------------------------------------------------ real data


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs the shared public data copies")
@pytest.mark.parametrize("name", ["relift/valid.parquet", "kk_logic_rl/3ppl/train.parquet"])
def test_public_files_have_no_problems(name):
    """True negatives on real files: ReLIFT's validation set and Logic-RL's templated K&K prompts."""
    found = check_rl_files("data.train_files", [str(SHARED / name)], prompt_key="prompt", source_key="data_source",
                           target_key="target")
    assert found.problems == [] and found.rows > 0 and found.none_truth_count == 0
    assert len(found.prompts.messages) == found.rows


# ------------------------------------------------------------------------------------------------ entry point


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})


@pytest.mark.faults
def test_main_rl_exits_2_without_traceback_before_any_model_loads(tmp_path, model_dir):
    rows = [rl_row() for _ in range(500)]
    rows[321] = rl_row(source="typo_source")
    train = write(tmp_path / "train.parquet", rows)
    res = _run(["trainer.main_rl", f"data.train_files={train}", f"actor_rollout_ref.model.path={model_dir}",
                "trainer.device=cpu", f"trainer.default_local_dir={tmp_path / 'ckpt'}"])
    assert res.returncode == 2, res.stderr[-2000:]
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout
    assert f"{train} row 321: column 'data_source' is 'typo_source'" in res.stderr
    # the model folder has no weights: had the run got that far it would have failed on them instead
    assert "safetensors" not in res.stderr and "pytorch_model" not in res.stderr
    assert not (tmp_path / "ckpt").exists()


@pytest.mark.faults
def test_main_rl_corrupt_file_exits_2(tmp_path, model_dir):
    corrupt = tmp_path / "train.parquet"
    corrupt.write_bytes(b"not parquet at all")
    res = _run(["trainer.main_rl", f"data.train_files={corrupt}", f"actor_rollout_ref.model.path={model_dir}",
                "trainer.device=cpu", "trainer.dry_run=true"])
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"{corrupt} is not a readable parquet file" in res.stderr


@pytest.mark.faults
@pytest.mark.parametrize("case", ["corrupt", "empty", "ill_typed_prompt", "over_long_prompt"])
def test_issue19_holds_fail_clearly_before_training(case, tmp_path, model_dir, monkeypatch, capsys):
    """Issue 19's "holds" list stays true, now at plan time: exit status 2, the file and row named, and
    ``train`` (which would load the model) never called."""
    from trainer import main_rl

    path = tmp_path / "train.parquet"
    overrides = []
    if case == "corrupt":
        path.write_bytes(b"PAR1 truncated")
        expect = f"{path} is not a readable parquet file"
    elif case == "empty":
        pd.DataFrame(rl_row(), index=[0]).iloc[:0].to_parquet(path)
        expect = f"{path} has no rows"
    elif case == "ill_typed_prompt":
        write(path, [dict(rl_row(), prompt="plain text, not messages")] * 3)
        expect = f"{path} row 0: column 'prompt' must be a list of chat messages"
    else:
        write(path, [rl_row(q="x" * 100)] * 3)
        overrides = ["data.max_prompt_length=50"]
        expect = f"{path} row 0: the prompt (column 'prompt' after the chat template) is {CHATML_OVERHEAD + 100} tokens"
    called = []
    monkeypatch.setattr(main_rl, "train", lambda spec: called.append(spec))
    assert main_rl.run_main(rl_cfg(str(path), model_dir, *overrides)) == 2
    err = capsys.readouterr().err
    assert expect in err and "Traceback" not in err and called == []
