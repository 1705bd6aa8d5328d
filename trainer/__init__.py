"""Drivers and entry points: the online RL trainer, the offline trainer, generation and evaluation."""

from __future__ import annotations

from workers.cpu_threads import prefer_passive_omp_wait as _prefer_passive_omp_wait

# libgomp reads OMP_WAIT_POLICY once, when torch loads it, so the choice (passive on a busy node,
# libgomp's spinning default on a quiet one, a user's own policy always) must be made before any
# entry point (python -m trainer.<main>) imports torch: workers/cpu_threads.py says why.
OMP_WAIT_POLICY = _prefer_passive_omp_wait()
