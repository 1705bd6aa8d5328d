"""Disk full or unwritable output during a save (issue 19.6) and file modes that follow the umask
(issue 13.6): a failed save says where and how much space is needed, leaves no ``.tmp-`` folder and
the previous checkpoint stays the tracked, loadable one."""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections import namedtuple
from pathlib import Path

import pytest

from relift.utils import checkpoint as ck
from trainer.run_checkpoint import check_free_space, save_run_checkpoint
from trainer.run_errors import SaveFailed

pytestmark = pytest.mark.faults  # fault injection (issue 19): `bash scripts/test.sh -m faults`

_Usage = namedtuple("_Usage", "total used free")
MIB = 2**20


class _Group:
    """Stands in for the actor worker group: writes ``size`` bytes, or fails the way asked."""

    def __init__(self, size: int = MIB, fail: BaseException | None = None) -> None:
        self.size, self.fail = size, fail

    def save_checkpoint(self, path: str, global_step: int) -> None:
        folder = Path(path)
        folder.mkdir(parents=True)
        (folder / "model.bin").write_bytes(b"\0" * (self.size // 2))  # half written, then the failure
        if self.fail is not None:
            raise self.fail
        (folder / "model2.bin").write_bytes(b"\0" * (self.size - self.size // 2))
        ck.atomic_save({"step": global_step}, folder / "extra.pt")


class _Loader:
    def state_dict(self) -> dict:
        return {"pos": 4}


def _save(root: Path, step: int, group: _Group) -> Path:
    return save_run_checkpoint(root, step, 0, group, _Loader(), {"m": 1.0}, spec={"__spec__": "X"})


def _assert_previous_intact(root: Path) -> None:
    assert not list(root.glob(".tmp-*")), "the partial save must be removed"
    assert ck.read_tracker(root) == 1 and ck.latest_checkpoint(root) == root / "global_step_1"
    assert ck.load_driver_state(root / "global_step_1")["global_step"] == 1


def test_too_little_free_space_is_refused_before_writing(tmp_path, monkeypatch):
    _save(tmp_path, 1, _Group(size=MIB))
    need = ck.tree_size(tmp_path / "global_step_1")
    assert need > MIB
    monkeypatch.setattr(shutil, "disk_usage", lambda p: _Usage(10 * MIB, 10 * MIB - 200 * 1024, 200 * 1024))
    with pytest.raises(SaveFailed) as err:
        _save(tmp_path, 2, _Group(size=MIB))
    msg = str(err.value)
    assert str(tmp_path) in msg and f"{need / MIB:.1f} MiB" in msg and "0.2 MiB free" in msg
    assert "global_step_1" in msg
    _assert_previous_intact(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: _Usage(10 * MIB, 0, need))
    assert check_free_space(tmp_path) == need  # exactly enough is enough
    assert check_free_space(tmp_path / "fresh") == 0  # nothing saved yet: nothing to compare against


@pytest.mark.parametrize(
    "fail",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        # what torch.save reports on a full disk: the errno only in the text
        RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0: No space left on device"),
    ],
    ids=["oserror", "torch-runtimeerror"],
)
def test_disk_full_during_the_save_removes_the_partial_save(tmp_path, fail):
    _save(tmp_path, 1, _Group())
    with pytest.raises(SaveFailed) as err:
        _save(tmp_path, 2, _Group(fail=fail))
    msg = str(err.value)
    assert "disk is full" in msg and str(tmp_path) in msg and "MiB" in msg and "global_step_1 is intact" in msg
    assert err.value.exit_code == 1
    _assert_previous_intact(tmp_path)


def test_unwritable_output_and_other_errors(tmp_path):
    _save(tmp_path, 1, _Group())
    with pytest.raises(SaveFailed, match="PermissionError"):
        _save(tmp_path, 2, _Group(fail=PermissionError(errno.EACCES, "Permission denied")))
    _assert_previous_intact(tmp_path)
    with pytest.raises(ValueError, match="a bug"):  # not a disk problem: raised as it is, still cleaned
        _save(tmp_path, 2, _Group(fail=ValueError("a bug")))
    _assert_previous_intact(tmp_path)


@pytest.mark.parametrize(("mask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_checkpoint_files_follow_the_umask(tmp_path, mask, file_mode, dir_mode):
    from trainer.run_lock import RunLock

    old = os.umask(mask)
    try:
        assert ck.current_umask() == mask
        with RunLock(tmp_path):
            _save(tmp_path, 1, _Group(size=1024))
            _save(tmp_path, 2, _Group(size=1024))
    finally:
        os.umask(old)
    paths = list(tmp_path.rglob("*"))
    files = [p for p in paths if p.is_file()]
    assert {p.name for p in files} >= {
        "model.bin",
        "extra.pt",
        "driver_state.pt",
        "run_spec.json",
        "latest_checkpointed_iteration.txt",
        "run.lock",
    }
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == file_mode, (p, oct(p.stat().st_mode))
    for p in [p for p in paths if p.is_dir()]:
        assert stat.S_IMODE(p.stat().st_mode) == dir_mode, (p, oct(p.stat().st_mode))


@pytest.mark.timeout(300)
def test_a_run_stops_cleanly_when_the_disk_is_full_at_its_second_save(tmp_path, monkeypatch):
    from test_rl_trainer import make_workspace, train

    import trainer.run_checkpoint as rc

    ws = make_workspace(tmp_path / "ws")
    out = tmp_path / "out"
    real = shutil.disk_usage

    def full(path):
        u = real(path)
        return _Usage(u.total, u.total - 1024, 1024)

    monkeypatch.setattr(rc.shutil, "disk_usage", full)
    with pytest.raises(SaveFailed, match="not enough disk space"):
        train(ws, out, **{"trainer.total_training_steps": 3, "trainer.save_freq": 1})
    _assert_previous_intact(out)
    assert (out / "run.lock").read_text() == ""  # the lock was released on the way out
