"""Helpers for tests that run child processes: kill one at a chosen moment, or run it as a gloo rank."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def sigkill_after(proc: subprocess.Popen) -> Iterator[None]:
    """Run the ``with`` block (it waits for the moment), then SIGKILL ``proc``; assert it died of it."""
    try:
        yield
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL


@contextlib.contextmanager
def gloo_rank(rank: int, world: int, port: int) -> Iterator[None]:
    """Run the ``with`` block as rank ``rank`` of a local gloo group, then end this (spawned) process.

    Why ``os._exit``: a full-suite run now and then saw a rank abort *after* its work had passed, at
    teardown ("terminate called without an active exception", SIGABRT), even with every rank meeting
    at a barrier first (not reproduced locally in 25 runs; most likely the group, and the objects
    FSDP2 keeps on it, being destroyed while the interpreter shuts down). Leaving with ``os._exit(0)``
    after the barrier skips that finalisation.
    A failure inside the block is re-raised as usual, so the spawning test reports its traceback.
    The block hands its results over in a file (``torch.save``): ``os._exit`` does not wait for the
    feeder thread of a multiprocessing queue. Spawn the ranks with ``torch.multiprocessing.start_processes``
    so that one rank's failure stops the others at once instead of leaving them at the barrier.
    """
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        yield
    except BaseException:
        dist.destroy_process_group()
        raise
    dist.barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
