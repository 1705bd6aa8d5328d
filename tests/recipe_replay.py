"""Run a shell recipe for real with a stand-in interpreter, then plan its trainer call in this process.

Why: a recipe's own work is shell (find the python via ``scripts/find_python.sh``, export settings,
build the Hydra overrides, ``exec "$PYTHON" -m trainer.main_rl ...``). Starting the real interpreter
costs 5-10 s of imports (torch, transformers, Ray) per recipe on a 2-core box, and the test suite ran
some 60 of them. Here the script runs unchanged under ``sh``/``bash`` with ``RELIFT_VENV`` (or
``PYTHON``) naming a stand-in ``bin/python`` that records its argv, working directory and
environment and exits 0; each recorded ``-m trainer.main_rl`` / ``main_offline`` / ``main_generation`` call is
then composed and planned inside the pytest process by the same functions the entry point runs on
``trainer.dry_run=true`` (:func:`trainer.plan.compose_config`, which ports verl / ReLIFT keys and
composes like ``@hydra.main``, then the module's ``run_main``; see trainer/entry.py). ``--cfg job``
gives the composed config instead, as Hydra's flag prints it (without the ``hydra`` section).

What it does not prove (each is covered by real interpreter runs elsewhere): that the real
interpreter is the one picked and that ``python -m`` resolves the module from any directory
(tests/test_every_script.py keeps one real ``sh`` dry run per launcher family).
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# the stand-in: answers find_python.sh's hydra probe (`-c ...`: exit 0) and records every call
STANDIN = """#!/bin/sh
d="$RELIFT_TEST_RECORD"
n=0
while [ -e "$d/$n.argv" ]; do n=$((n + 1)); done
pwd > "$d/$n.cwd"
env -0 > "$d/$n.env"
printf '%s\\0' "$@" > "$d/$n.argv"
exit 0
"""

ENTRY_CONFIGS = {  # module -> its Hydra config (the name each module passes to trainer.entry.hydra_entry)
    "trainer.main_rl": "rl_trainer",
    "trainer.main_offline": "offline_trainer",
    "trainer.main_generation": "generation",
}


@dataclass
class Call:
    """One recorded ``python ARGS`` call of a script."""

    argv: list[str]
    cwd: str
    env: dict[str, str]


@dataclass
class Replayed:
    """Like :class:`subprocess.CompletedProcess`: the script's own output followed by its trainer calls'."""

    returncode: int
    stdout: str
    stderr: str
    calls: list[Call]


def standin_venv(root: Path) -> Path:
    """A folder shaped like a venv whose ``bin/python`` is the recording stand-in; returns the folder."""
    venv = root / "standin-venv"
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    py = venv / "bin" / "python"
    py.write_text(STANDIN)
    py.chmod(0o755)
    return venv


def _record(
    cmd: list[str], env: dict[str, str], cwd: str, record: Path, timeout: int = 60
) -> tuple[subprocess.CompletedProcess, list[Call]]:
    record.mkdir(parents=True, exist_ok=True)
    for old in record.iterdir():
        old.unlink()
    res = subprocess.run(
        cmd, cwd=cwd, env={**env, "RELIFT_TEST_RECORD": str(record)}, capture_output=True, text=True, timeout=timeout
    )
    calls = []
    n = 0
    while (record / f"{n}.argv").exists():
        argv = (record / f"{n}.argv").read_text().split("\0")[:-1]
        pairs = [e.split("=", 1) for e in (record / f"{n}.env").read_text().split("\0") if "=" in e]
        env_n = {k: v for k, v in pairs if k != "RELIFT_TEST_RECORD"}
        calls.append(Call(argv=argv, cwd=(record / f"{n}.cwd").read_text().strip(), env=env_n))
        n += 1
    return res, calls


@contextlib.contextmanager
def _as_called(call: Call):
    """The call's working directory and exact environment, restored afterwards."""
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    os.environ.clear()
    os.environ.update(call.env)
    os.chdir(call.cwd)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


def _entry(call: Call) -> tuple[str, list[str]]:
    """(module, overrides) of a ``-m trainer.main_*`` call; anything else is an error, never skipped."""
    if len(call.argv) < 2 or call.argv[0] != "-m" or call.argv[1] not in ENTRY_CONFIGS:
        raise AssertionError(f"the stand-in python cannot replay {call.argv[:3]!r}: run this script for real")
    return call.argv[1], call.argv[2:]


def plan_call(call: Call) -> tuple[int, str, str]:
    """Compose and plan one trainer call here, as its ``trainer.dry_run=true`` would: (status, stdout, stderr)."""
    import importlib  # noqa: PLC0415

    from trainer.entry import EXIT_BAD_CONFIG  # noqa: PLC0415
    from trainer.plan import PlanError, compose_config  # noqa: PLC0415

    module, overrides = _entry(call)
    flags = [a for a in overrides if a.startswith("-")]
    assert not flags, f"replay takes Hydra overrides only, not {flags} (use composed_config)"
    out, err = io.StringIO(), io.StringIO()
    with _as_called(call), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cfg = compose_config(ENTRY_CONFIGS[module], overrides)
        except PlanError as e:  # what hydra_entry prints and exits with
            print(f"[relift] {e}", file=err)
            return EXIT_BAD_CONFIG, out.getvalue(), err.getvalue()
        rc = importlib.import_module(module).run_main(cfg)
    return rc, out.getvalue(), err.getvalue()


def dry_run(cmd: list[str], env: dict[str, str], cwd: str, record: Path) -> Replayed:
    """Run ``cmd`` (``[shell, script, args...]``) with the stand-in python named in ``env``, then plan
    each trainer call it made, in order.

    The status is the script's, else the first failing call's; stdout/stderr are the script's then the
    calls' (a script that calls no trainer prints no plan: callers check the plan's lines).
    """
    res, calls = _record(cmd, env, cwd, record)
    stdout, stderr, rc = res.stdout, res.stderr, res.returncode
    trainer_calls = [c for c in calls if c.argv[:1] != ["-c"]]  # `-c`: find_python.sh's hydra probe
    if rc == 0:
        for call in trainer_calls:
            crc, cout, cerr = plan_call(call)
            stdout, stderr = stdout + cout, stderr + cerr
            if crc:
                rc = crc
                break
    return Replayed(returncode=rc, stdout=stdout, stderr=stderr, calls=calls)


def composed_config(cmd: list[str], env: dict[str, str], cwd: str, record: Path) -> dict[str, Any]:
    """What ``cmd`` ending in ``--cfg job`` prints, as a dict: the one trainer call's config, unresolved,
    without the ``hydra`` section."""
    from omegaconf import OmegaConf  # noqa: PLC0415

    from trainer.plan import compose_config  # noqa: PLC0415

    res, calls = _record(cmd, env, cwd, record)
    assert res.returncode == 0, (cmd, res.stderr)
    (call,) = [c for c in calls if c.argv[:1] != ["-c"]]
    module, argv = _entry(call)
    assert argv[:2] == ["--cfg", "job"] or argv[-2:] == ["--cfg", "job"], argv
    overrides = [a for a in argv if a not in ("--cfg", "job")]
    with _as_called(call), contextlib.redirect_stderr(io.StringIO()):
        cfg = compose_config(ENTRY_CONFIGS[module], overrides)
    out = OmegaConf.to_container(cfg, resolve=False)
    out.pop("hydra", None)
    return out
