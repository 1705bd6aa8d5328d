"""Benchmarks without hand work: the hub download (with a stand-in for datasets.load_dataset, since no
hub is reachable from tests), the error that names both ways to get the files, and the protocol presets."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from dataset import benchmark_hub, math_benchmarks

REPO = Path(__file__).resolve().parent.parent

# rows shaped like the hub copies (dataset pages of the ids in benchmark_hub.HUB_SOURCES)
HUB_ROWS = {
    "HuggingFaceH4/aime_2024": [{"id": 60, "problem": "Find x.", "solution": "...", "answer": "204",
                                 "url": "u", "year": "2024"}],
    "math-ai/amc23": [{"id": 0, "question": "How many?", "answer": 27.0}],
    "HuggingFaceH4/MATH-500": [{"problem": "Compute 1+1.", "solution": "\\boxed{2}", "answer": "2",
                                "subject": "Algebra", "level": 1, "unique_id": "test/algebra/1.json"}],
    "math-ai/minervamath": [{"question": "What is c?", "answer": "3 \\times 10^8"}],
    "Hothan/OlympiadBench": [{"id": 1606, "question": "Find all n.", "final_answer": ["$\\frac{1}{2}$"],
                              "is_multiple_answer": False}],
}


def fake_loader(calls: list):
    def load(repo, config=None, split=None, revision=None):
        calls.append((repo, config, split, revision))
        return HUB_ROWS[repo]
    return load


def test_download_writes_the_jsonl_the_converter_reads(tmp_path):
    calls: list = []
    raw = tmp_path / "raw"
    written = benchmark_hub.download_benchmarks(raw, loader=fake_loader(calls))
    assert sorted(written) == sorted(math_benchmarks.BENCHMARKS)
    assert ("Hothan/OlympiadBench", "OE_TO_maths_en_COMP", "train", "3b426ee1d587c71b495146dde9f3e995ee7ac59f") in calls
    assert ("HuggingFaceH4/MATH-500", None, "test", "ff5b20257d8185524591543f8ff5993951537bb8") in calls
    out = math_benchmarks.write_benchmarks(raw, tmp_path / "rl", limit=1)
    truths = {n: pd.read_parquet(p)["reward_model"][0]["ground_truth"] for n, p in out.items()}
    assert truths == {"aime24": "204", "amc23": "27", "math500": "2", "minerva_math": "3 \\times 10^8",
                      "olympiadbench": "\\frac{1}{2}"}
    # an existing file is kept (no second load) unless overwrite
    calls.clear()
    benchmark_hub.download_benchmarks(raw, ["aime24"], loader=fake_loader(calls))
    assert calls == []
    benchmark_hub.download_benchmarks(raw, ["aime24"], loader=fake_loader(calls), overwrite=True,
                                      revisions={"aime24": "abc"})
    assert calls == [("HuggingFaceH4/aime_2024", None, "train", "abc")]
    assert json.loads((raw / "aime24.jsonl").read_text().splitlines()[0])["answer"] == "204"


def test_download_failure_names_the_hub_id_and_the_local_way(tmp_path):
    def offline(repo, config=None, split=None, revision=None):
        raise ConnectionError("no network")
    with pytest.raises(RuntimeError, match=r"math500: could not load HuggingFaceH4/MATH-500 split test .*no network.*"
                                           r"put math500.jsonl into"):
        benchmark_hub.download_benchmarks(tmp_path, ["math500"], loader=offline)
    assert not (tmp_path / "math500.jsonl").exists()
    with pytest.raises(ValueError, match="no hub source for"):
        benchmark_hub.download_benchmarks(tmp_path, ["gsm8k"], loader=offline)


def test_missing_files_error_names_both_ways(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Two ways to get them: \(1\) put <name>.jsonl .* \(2\) download "
                                                r"them .*--download"):
        math_benchmarks.write_benchmarks(tmp_path, tmp_path / "out", ["aime24"])


def _protocol(env: dict, protocol: str) -> dict:
    script = (f'repo={REPO}; . {REPO}/eval_scripts/protocols.sh; PROTOCOL={protocol}; apply_protocol || exit $?; '
              'echo "N=$N_SAMPLES T=$TEMPERATURE P=$TOP_P R=${MAX_RESPONSE_LENGTH:-} B=${BENCHMARKS:-} '
              'D=${DATA_FILES:-} E=${EVAL_ARGS:-} C=${CAPABILITY:-} A=${APPLY_CHAT_TEMPLATE:-}"')
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME")}
    res = subprocess.run(["sh", "-c", script], env={**keep, **env}, capture_output=True, text=True)
    return {"rc": res.returncode, "out": res.stdout.strip(), "err": res.stderr}


def test_protocol_presets(tmp_path):
    assert _protocol({}, "redi")["out"] == ("N=16 T=0.6 P=0.95 R=32768 B=aime24,amc23,math500,minerva_math,"
                                            "olympiadbench D= E= C= A=")
    assert _protocol({"N_SAMPLES": "4"}, "redi")["out"].startswith("N=4 T=0.6")   # the user's value wins
    relift = _protocol({"RELIFT_VALID": "/x/valid.parquet"}, "relift")["out"]
    assert relift == "N=1 T=0.6 P=1.0 R=8192 B= D=/x/valid.parquet E= C= A="
    assert _protocol({}, "rlvsdistill")["out"] == "N=256 T=0.6 P=0.95 R= B=math500 D= E= C=1 A="
    missing = _protocol({"KK_DIR": str(tmp_path)}, "kk")
    assert missing["rc"] == 2 and "no <N>ppl/test.parquet under" in missing["err"]
    for n in (3, 5):
        (tmp_path / f"{n}ppl").mkdir()
        (tmp_path / f"{n}ppl" / "test.parquet").write_bytes(b"")
    kk = _protocol({"KK_DIR": str(tmp_path), "KK_MODEL": "instruct"}, "kk")["out"]
    assert kk == (f"N=1 T=0 P=1.0 R= B= D={tmp_path}/3ppl/test.parquet,{tmp_path}/5ppl/test.parquet "
                  "E=eval.group_by=kk_people C= A=false")
    assert "T=1.0" in _protocol({"KK_DIR": str(tmp_path)}, "kk")["out"]
    bad = _protocol({}, "nope")
    assert bad["rc"] == 2 and "unknown PROTOCOL 'nope'" in bad["err"]


def test_eval_math_needs_no_data_outside_the_repo(tmp_path):
    """Without benchmark files the script stops with both ways to get them (no ../shared fallback)."""
    if not (REPO / ".venv" / "bin" / "python").exists() and not os.environ.get("RELIFT_VENV"):
        pytest.skip("needs the project venv")
    env = {**os.environ, "MODEL_PATH": str(tmp_path / "m"), "BENCH_DIR": str(tmp_path / "none"),
           "OUT_DIR": str(tmp_path / "out")}
    res = subprocess.run(["sh", str(REPO / "eval_scripts" / "eval_math.sh")], env=env, capture_output=True,
                         text=True, cwd=tmp_path)
    assert res.returncode != 0
    assert "Two ways to get them" in res.stderr and "--download" in res.stderr
    assert "shared" not in (REPO / "eval_scripts" / "eval_math.sh").read_text()
