"""Errors that end a run with one message and no traceback (the entry points print them).

:class:`RunStopped` carries the exit status: 2 for a run refused before it trains (another run holds
the directory, the checkpoint belongs to another run, see :mod:`trainer.run_lock` and
:mod:`trainer.resume_check`), 1 for a save that failed (disk full, unwritable output).
"""

from __future__ import annotations

__all__ = ["RunStopped", "RunRefused", "SaveFailed"]


class RunStopped(RuntimeError):
    """The run stops; ``str(err)`` says why and what to do, ``exit_code`` is the process status."""

    exit_code = 1


class RunRefused(RunStopped):
    """This run must not start as asked (exit status 2, like a bad config)."""

    exit_code = 2


class SaveFailed(RunStopped):
    """A checkpoint could not be written; the partial save is gone, the previous checkpoint stays."""

    exit_code = 1
