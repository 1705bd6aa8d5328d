"""The toy teacher of examples/quickstart/redi_vs_baselines.py and its shell entry point."""

from __future__ import annotations

import importlib.util
import os
import random
import re
import subprocess
from pathlib import Path

import pandas as pd

from dataset.prepare_redi import prepare
from relift.models.tiny import build_tiny_tokenizer

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("rvb", REPO / "examples" / "quickstart" / "redi_vs_baselines.py")
rvb = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rvb)


def test_clean_traces_are_right_and_slipped_traces_wrong_but_self_consistent():
    rng = random.Random(0)
    for _ in range(300):
        a, b = rng.randrange(100), rng.randrange(100)
        text, value = rvb.teacher_trace(a, b, rng, slip=False)
        assert value == a + b and text.endswith(f"\\boxed{{{a + b}}}")
        text, value = rvb.teacher_trace(a, b, rng, slip=True)
        assert value != a + b and text.endswith(f"\\boxed{{{value}}}")
        for step in text.split()[:-1]:  # every written step adds up as written, except the one slip
            lhs, rhs = step.split("=")
            assert abs(sum(int(t) for t in lhs.split("+")) - int(rhs)) <= 1
    assert rvb.teacher_trace(47, 85, rng, slip=False)[0] == "7+5=12 4+8+1=13 \\boxed{132}"


def test_teacher_raw_file_goes_through_prepare_redi(tmp_path):
    rvb.write_teacher_raw(tmp_path / "raw.parquet", 50, 4, 0.5, (2, 3), seed=0, held_out=set())
    counts = prepare(pd.read_parquet(tmp_path / "raw.parquet"), build_tiny_tokenizer(), tmp_path)
    assert counts["raw rows"] == 50 and 0 < counts["pairs: prompt <= 800, both <= 19000"] < 50
    pairs = pd.read_parquet(tmp_path / "pairs.parquet")
    for _, row in pairs.iterrows():
        a, b = map(int, re.match(r"(\d+)\+(\d+)=", row["prompt"][0]["content"]).groups())
        assert row["chosen"][0]["content"].endswith(f"\\boxed{{{a + b}}}")
        assert not row["rejected"][0]["content"].endswith(f"\\boxed{{{a + b}}}")


def test_shell_help_and_missing_venv(tmp_path):
    script = REPO / "examples" / "quickstart" / "redi_vs_baselines.sh"
    res = subprocess.run(["sh", str(script), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert res.returncode == 0 and "sh examples/quickstart/redi_vs_baselines.sh" in res.stdout
    assert list(tmp_path.iterdir()) == []
    fake = tmp_path / "repo" / "examples" / "quickstart"
    fake.mkdir(parents=True)
    (fake / script.name).write_text(script.read_text())
    (tmp_path / "repo" / "scripts").mkdir()  # the shared interpreter lookup (scripts/find_python.sh)
    (tmp_path / "repo" / "scripts" / "find_python.sh").write_text((REPO / "scripts" / "find_python.sh").read_text())
    env = {k: v for k, v in os.environ.items() if k != "RELIFT_VENV"}
    res = subprocess.run(["sh", str(fake / script.name)], cwd=tmp_path, capture_output=True, text=True, timeout=30,
                         env=env)
    assert res.returncode == 2 and "no python at" in res.stderr and "bash scripts/setup_env.sh" in res.stderr


def test_error_kinds_by_hand():
    spec2 = importlib.util.spec_from_file_location("rek", REPO / "examples" / "quickstart" / "redi_error_kinds.py")
    rek = importlib.util.module_from_spec(spec2)
    spec2.loader.exec_module(rek)
    assert rek.classify("47+85=", "7+5=12 4+8+1=13 \\boxed{132}") == "correct"
    assert rek.classify("47+85=", "7+5=13 4+8+1=13 \\boxed{133}") == "step slip"   # 7+5 is not 13
    assert rek.classify("47+85=", "7+5=12 4+8=12 \\boxed{122}") == "step slip"     # dropped carry
    assert rek.classify("47+85=", "7+5=12 4+8+1=13 \\boxed{131}") == "copy slip"   # steps right, box wrong
    assert rek.classify("47+85=", "\\boxed{131}") == "other"
    rng = random.Random(3)
    for _ in range(200):  # the teacher's own slips are step slips, never copy slips
        a, b = rng.randrange(10, 100), rng.randrange(10, 100)
        text, _ = rvb.teacher_trace(a, b, rng, slip=True)
        assert rek.classify(f"{a}+{b}=", text) == "step slip", text
