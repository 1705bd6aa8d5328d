"""trainer.dry_run=true prints the first row as the model sees it; an unreadable first row exits 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from relift.models.tiny import build_tiny_model

REPO = Path(__file__).resolve().parents[1]
USER = [{"role": "user", "content": "6*7?"}]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    return str(build_tiny_model(tmp_path_factory.mktemp("m") / "model"))


def dry(files: Path, model: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainer.main_offline", f"data.train_files={files}",
                           f"model.path={model}", "trainer.dry_run=true", "data.train_batch_size=1",
                           "data.micro_batch_size_per_gpu=1", *extra],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


def test_pair_dry_run_shows_prompt_and_trained_completion(tmp_path, model):
    path = tmp_path / "pairs.parquet"
    pd.DataFrame({"chosen": [USER + [{"role": "assistant", "content": "42"}]],
                  "rejected": [USER + [{"role": "assistant", "content": "41"}]]}).to_parquet(path)
    res = dry(path, model, "data.kind=pairs", "loss.type=redi")
    assert res.returncode == 0, res.stderr
    prompt = "<|im_start|>user\\n6*7?<|im_end|>\\n<|im_start|>assistant\\n"
    assert f"  [chosen] prompt: {prompt}\n  [chosen] completion (trained): 42<|im_end|>\\n<|im_end|>\n" in res.stdout
    assert "  [rejected] completion (trained): 41<|im_end|>\\n<|im_end|>\n" in res.stdout


def test_sft_dry_run_and_unreadable_first_row(tmp_path, model):
    path = tmp_path / "sft.parquet"
    pd.DataFrame({"messages": [USER + [{"role": "assistant", "content": "42"}]]}).to_parquet(path)
    res = dry(path, model)
    assert res.returncode == 0, res.stderr
    assert "  prompt: <|im_start|>user\\n6*7?<|im_end|>\\n<|im_start|>assistant\\n\n" \
           "  completion (trained): 42<|im_end|>\\n<|im_end|>\n" in res.stdout
    bad = tmp_path / "bad.parquet"
    pd.DataFrame({"messages": [USER]}).to_parquet(bad)
    res = dry(bad, model)
    assert res.returncode == 2
    # since issue 13 the plan reads every row (trainer/plan/data_checks.py), before the first-row preview
    assert f"data.train_files: {bad} row 0: column 'messages' must end with an assistant message" in res.stderr
    assert "Traceback" not in res.stderr
