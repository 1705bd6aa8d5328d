"""scripts/gpu_smoke.sh on a machine without CUDA: usage, a clear refusal, a clear missing-venv error.

The checks themselves need a GPU (and vLLM for the engine part); docs/gpu.md says where the output
of a GPU run is recorded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_smoke.sh"


def run(shell: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run([shell, str(SCRIPT), *args], capture_output=True, text=True, timeout=300,
                          cwd="/", env={**base, **env})


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_help_prints_usage_and_runs_nothing(shell):
    res = run(shell, "--help", RELIFT_VENV="/nonexistent")   # would fail if it looked for python
    assert res.returncode == 0 and "Usage" not in res.stderr
    assert "sh scripts/gpu_smoke.sh" in res.stdout and "Exit status" in res.stdout
    assert "set -eu" not in res.stdout


def test_missing_venv_is_a_clear_error():
    res = run("sh", RELIFT_VENV="/nonexistent")
    assert res.returncode == 1 and "no python at /nonexistent/bin/python (RELIFT_VENV=/nonexistent)" in res.stderr
    assert "bash scripts/setup_env.sh" in res.stderr


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_without_cuda_it_says_so_and_exits_2(shell):
    venv = Path(sys.executable).parent.parent
    res = run(shell, RELIFT_VENV=str(venv), CUDA_VISIBLE_DEVICES="")
    assert res.returncode == 2, res.stdout + res.stderr
    assert "FAIL cuda: no CUDA device visible" in res.stdout and "nothing else was checked" in res.stdout
