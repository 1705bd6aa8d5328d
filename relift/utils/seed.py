"""Seeding and RNG-state capture, so a resumed run draws the same random numbers as an uninterrupted one.

The captured state holds only python ints/floats/strings, tuples, dicts and torch tensors, so it
goes through ``torch.save`` and ``torch.load(weights_only=True)`` unchanged (no pickled numpy).
"""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import torch

__all__ = ["set_seed", "get_rng_state", "set_rng_state"]

logger = logging.getLogger(__name__)


def set_seed(seed: int, deterministic: bool = False) -> None:
    """Seed python's ``random``, numpy's global generator, torch (CPU and every CUDA device).

    ``deterministic=True`` also asks torch for deterministic kernels (slower; errors on ops that
    have none, which is the point when debugging a non-reproducible run).
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {seed!r}")
    seed = int(seed)
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device when CUDA is initialised
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True)


def _numpy_state() -> dict[str, Any]:
    state = np.random.get_state(legacy=False)
    if state.get("bit_generator") != "MT19937":  # the global legacy generator is always MT19937
        raise RuntimeError(f"unexpected numpy global bit generator {state.get('bit_generator')!r}")
    return {
        "bit_generator": state["bit_generator"],
        "key": torch.from_numpy(np.asarray(state["state"]["key"], dtype=np.int64).copy()),
        "pos": int(state["state"]["pos"]),
        "has_gauss": int(state["has_gauss"]),
        "gauss": float(state["gauss"]),
    }


def _set_numpy_state(state: dict[str, Any]) -> None:
    key = state["key"]
    key = key.numpy() if isinstance(key, torch.Tensor) else np.asarray(key)
    np.random.set_state((state["bit_generator"], key.astype(np.uint32), int(state["pos"]),
                         int(state["has_gauss"]), float(state["gauss"])))


def get_rng_state() -> dict[str, Any]:
    """Capture python, numpy, torch CPU and (when available) all CUDA generators' states."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": _numpy_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` captured.

    A CUDA state saved on a machine with a different number of devices (or restored on a CPU-only
    machine) is skipped with a warning rather than failing the resume.
    """
    missing = [k for k in ("python", "numpy", "torch") if k not in state]
    if missing:
        raise KeyError(f"RNG state is missing {missing}; expected the dict get_rng_state() returns")
    py = state["python"]
    # torch.load may hand back lists where tuples were saved; random.setstate needs tuples
    random.setstate((py[0], tuple(py[1]), py[2]))
    _set_numpy_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None:
        if torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:
            logger.warning("RNG state has %d CUDA generator(s) but this process sees %s; CUDA RNG not restored",
                           len(cuda), torch.cuda.device_count() if torch.cuda.is_available() else "no CUDA")
