"""Drivers and entry points: the online RL trainer, the offline trainer, generation and evaluation."""

from __future__ import annotations

import os as _os

# libgomp reads OMP_WAIT_POLICY once, when torch loads it, so the passive default must be in the
# environment before any entry point (python -m trainer.<main>) imports torch; a user's own policy
# wins. Why passive: workers/cpu_threads.py, prefer_passive_omp_wait.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
