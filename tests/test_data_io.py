"""Reading one or many parquet files and normalising their cells to plain Python."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from relift.data.io import as_dict, as_messages, as_text, expand_data_files, read_parquet_files, to_python


def test_many_files_keep_their_origin(shared_data):
    kk = shared_data / "kk_logic_rl"
    files = [kk / "3ppl" / "test.parquet", kk / "5ppl" / "test.parquet"]
    table = read_parquet_files([str(f) for f in files])
    assert len(table) == 200 and table.starts == [0, 100]
    assert table.origin(0) == f"{files[0]} row 0"
    assert table.origin(199) == f"{files[1]} row 99"
    df = pd.read_parquet(files[1])
    assert table.cell(150, "reward_model") == to_python(df["reward_model"][50])


def test_cells_become_plain_python(shared_data):
    table = read_parquet_files(shared_data / "relift" / "valid.parquet")
    raw = table.frame["prompt"].iat[0]
    assert isinstance(raw, np.ndarray)  # what pyarrow gives back
    prompt = table.cell(0, "prompt")
    assert isinstance(prompt, list) and all(type(m) is dict for m in prompt)
    assert [m["role"] for m in prompt] == ["system", "user"]
    kk = read_parquet_files(shared_data / "kk_logic_rl" / "3ppl" / "test.parquet")
    names, solution, index = kk.cell(0, "names"), kk.cell(0, "solution"), kk.cell(0, "index")
    assert type(names) is list and all(type(n) is str for n in names)
    assert type(solution) is list and all(type(b) is bool for b in solution)
    assert type(index) is int
    assert to_python(np.float64("nan")) is None and to_python({"a": np.int64(3)}) == {"a": 3}


def test_folders_globs_and_urls(tmp_path):
    for name in ("b.parquet", "a.parquet"):
        pd.DataFrame({"x": [1, 2]}).to_parquet(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not data")
    expected = [str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")]
    assert expand_data_files(tmp_path) == expected
    assert expand_data_files(str(tmp_path / "*.parquet")) == expected
    url = "hf://datasets/org/name/train.parquet"
    assert expand_data_files([url, str(tmp_path / "a.parquet")]) == [url, expected[0]]
    assert len(read_parquet_files(tmp_path)) == 4


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="data file '/no/such/file.parquet' does not exist"):
        expand_data_files("/no/such/file.parquet")
    with pytest.raises(FileNotFoundError, match="matches no files"):
        expand_data_files(str(tmp_path / "*.parquet"))
    with pytest.raises(FileNotFoundError, match="contains no"):
        expand_data_files(tmp_path)
    with pytest.raises(ValueError, match="empty list"):
        expand_data_files([])
    bad = tmp_path / "bad.parquet"
    bad.write_text("this is not parquet")
    with pytest.raises(ValueError, match="could not read parquet file .*bad.parquet"):
        read_parquet_files(bad)


def test_cell_validators():
    assert as_messages([{"role": "user", "content": "hi"}], "prompt", "f row 0") == [{"role": "user", "content": "hi"}]
    with pytest.raises(ValueError, match="f row 3: column 'prompt' must be a list of chat messages"):
        as_messages("hi", "prompt", "f row 3")
    with pytest.raises(ValueError, match="empty list"):
        as_messages([], "prompt", "f row 3")
    assert as_text([{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}], "t", "w") == "ab"
    assert as_text(None, "t", "w", allow_none=True) is None
    with pytest.raises(ValueError, match="column 't' is empty"):
        as_text(None, "t", "w")
    with pytest.raises(ValueError, match=r"lacks key\(s\) \['ground_truth'\]"):
        as_dict({"style": "rule"}, "reward_model", "w", required_keys=("ground_truth",))


def test_files_may_differ_in_column_types_and_columns(tmp_path):
    # a string ground truth in one file, a struct in the next (math beside knights-and-knaves), and a
    # column only the first file has: rows keep their own types, the missing cells read as None
    pd.DataFrame({"reward_model": [{"ground_truth": "7"}], "note": ["x"]}).to_parquet(tmp_path / "a.parquet")
    pd.DataFrame({"reward_model": [{"ground_truth": {"statements": "s", "solution": [True]}}] * 2},
                 index=[5, 9]).to_parquet(tmp_path / "b.parquet")  # a saved pandas index is not a column
    table = read_parquet_files(tmp_path)
    assert len(table) == 3 and table.columns == ["reward_model", "note"]
    assert table.cell(0, "reward_model") == {"ground_truth": "7"}
    assert table.cell(2, "reward_model") == {"ground_truth": {"statements": "s", "solution": [True]}}
    assert [table.cell(i, "note") for i in range(3)] == ["x", None, None]
    assert list(table.frame["note"].iloc[:1]) == ["x"] and len(table.frame) == 3
