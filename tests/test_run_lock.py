"""One run per output directory (issue 19.1): the lock refuses a second holder at once, names the
first, is dropped when its holder dies (kill -9 included) and a dead holder's record is taken over."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from trainer.run_errors import RunRefused
from trainer.run_lock import LOCK_FILE, RunLock, read_holder

pytestmark = pytest.mark.faults  # fault injection (issue 19): `bash scripts/test.sh -m faults`

REPO = Path(__file__).resolve().parents[1]

_HOLD = textwrap.dedent("""
    import sys, time
    from trainer.run_lock import RunLock
    RunLock(sys.argv[1]).acquire()
    print("held", flush=True)
    time.sleep(120)
""")


def _holder(folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(folder)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_lock_in_another_process_is_refused_naming_the_holder(tmp_path):
    proc = _holder(tmp_path)
    try:
        with pytest.raises(RunRefused) as err:
            RunLock(tmp_path).acquire()
        msg = str(err.value)
        assert f"pid {proc.pid}" in msg and socket.gethostname() in msg and str(tmp_path) in msg
        assert "trainer.default_local_dir" in msg  # what to do
        assert err.value.exit_code == 2
    finally:
        proc.kill()
        proc.wait()


def test_kill_9_releases_the_lock_and_the_stale_record_is_taken_over(tmp_path, caplog):
    proc = _holder(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert read_holder(tmp_path / LOCK_FILE)["pid"] == proc.pid  # the dead holder's record is still there
    lock = RunLock(tmp_path)
    with caplog.at_level("WARNING"):
        lock.acquire()
    try:
        assert lock.took_over["pid"] == proc.pid
        assert f"pid {proc.pid}" in caplog.text and "stale" in caplog.text
        assert read_holder(tmp_path / LOCK_FILE)["pid"] == os.getpid()
    finally:
        lock.release()


def test_release_empties_the_record_and_the_next_run_takes_it_silently(tmp_path, caplog):
    with RunLock(tmp_path) as lock:
        rec = read_holder(tmp_path / LOCK_FILE)
        assert rec["pid"] == os.getpid() and rec["host"] == socket.gethostname() and rec["started"]
        assert lock.held
    assert (tmp_path / LOCK_FILE).read_text() == ""
    with caplog.at_level("WARNING"), RunLock(tmp_path) as again:
        assert again.took_over is None
    assert "stale" not in caplog.text


def test_without_flock_a_live_pid_on_this_host_refuses_and_a_dead_one_is_taken_over(tmp_path, monkeypatch):
    import errno

    import trainer.run_lock as run_lock

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(run_lock.fcntl, "flock", no_flock)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        rec = {"host": socket.gethostname(), "pid": sleeper.pid, "started": "x", "command": "train"}
        (tmp_path / LOCK_FILE).write_text(json.dumps(rec))
        with pytest.raises(RunRefused, match="still running"):
            RunLock(tmp_path).acquire()
    finally:
        sleeper.kill()
        sleeper.wait()
    lock = RunLock(tmp_path).acquire()  # the pid is gone now
    assert lock.took_over["pid"] == sleeper.pid
    lock.release()
    other = {"host": "some-other-node", "pid": 1, "started": "x", "command": "train"}
    (tmp_path / LOCK_FILE).write_text(json.dumps(other))
    with pytest.raises(RunRefused, match="another host"):
        RunLock(tmp_path).acquire()


@pytest.mark.timeout(300)
def test_main_rl_refuses_a_locked_directory_with_exit_2(tmp_path):
    from test_rl_trainer import make_workspace, overrides

    ws = make_workspace(tmp_path / "ws")
    out = tmp_path / "out"
    proc = _holder(out)
    try:
        env = {**os.environ, "RELIFT_CPU_THREADS": "1"}
        env.pop("RAY_ADDRESS", None)
        res = subprocess.run(
            [sys.executable, "-m", "trainer.main_rl", *overrides(ws, out)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
        assert f"pid {proc.pid}" in res.stderr and "in use by another run" in res.stderr
        assert "Traceback" not in res.stderr
        assert not (out / "metrics.jsonl").exists()  # it wrote nothing into the other run's folder
    finally:
        proc.kill()
        proc.wait()
