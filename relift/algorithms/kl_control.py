"""KL coefficient controllers for the KL-in-reward penalty (fixed or adaptive, Ziegler et al. 2019).

The adaptive rule: ``e = clip(kl / target - 1, -0.2, 0.2)``, ``value *= 1 + e * n_steps / horizon``.
Controllers carry state across steps, so they expose ``state_dict``/``load_state_dict`` for resume.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

__all__ = ["FixedKLController", "AdaptiveKLController", "KLController", "get_kl_controller"]


class FixedKLController:
    """A constant coefficient; ``update`` is a no-op."""

    def __init__(self, kl_coef: float) -> None:
        if kl_coef < 0:
            raise ValueError(f"kl_coef must be >= 0, got {kl_coef}")
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_steps: int) -> None:  # noqa: ARG002 - same API as adaptive
        """Nothing to adapt."""

    def state_dict(self) -> dict[str, Any]:
        return {"type": "fixed", "value": self.value}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("type", "fixed") != "fixed":
            raise ValueError(f"cannot load a {state.get('type')!r} KL controller state into a fixed controller")
        self.value = float(state["value"])


class AdaptiveKLController:
    """Moves the coefficient so the observed KL tracks ``target_kl`` over ``horizon`` samples."""

    def __init__(self, init_kl_coef: float, target_kl: float, horizon: float) -> None:
        if init_kl_coef < 0:
            raise ValueError(f"init_kl_coef must be >= 0, got {init_kl_coef}")
        if not target_kl > 0:
            raise ValueError(f"adaptive KL controller needs target_kl > 0, got {target_kl}")
        if not horizon > 0:
            raise ValueError(f"adaptive KL controller needs horizon > 0, got {horizon}")
        self.value = float(init_kl_coef)
        self.target = float(target_kl)
        self.horizon = float(horizon)

    def update(self, current_kl: float, n_steps: int) -> None:
        """``value *= 1 + clip(kl/target - 1, -0.2, 0.2) * n_steps / horizon``."""
        proportional_error = min(max(float(current_kl) / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + proportional_error * n_steps / self.horizon

    def state_dict(self) -> dict[str, Any]:
        return {"type": "adaptive", "value": self.value, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("type", "adaptive") != "adaptive":
            raise ValueError(f"cannot load a {state.get('type')!r} KL controller state into an adaptive controller")
        self.value = float(state["value"])
        self.target = float(state.get("target", self.target))
        self.horizon = float(state.get("horizon", self.horizon))


KLController = FixedKLController | AdaptiveKLController


def get_kl_controller(config: Mapping[str, Any] | Any) -> KLController:
    """Build a controller from a :class:`relift.spec.KLControlSpec` or a mapping with its fields
    (``type: fixed|adaptive, kl_coef, target_kl, horizon``)."""
    if dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)
    kind = config.get("type", "fixed")
    kl_coef = config.get("kl_coef", 0.001)
    if kind == "fixed":
        return FixedKLController(kl_coef=kl_coef)
    if kind == "adaptive":
        missing = [k for k in ("target_kl", "horizon") if config.get(k) is None]
        if missing:
            raise ValueError(f"adaptive KL controller needs kl_ctrl.{' and kl_ctrl.'.join(missing)}")
        return AdaptiveKLController(init_kl_coef=kl_coef, target_kl=config["target_kl"], horizon=config["horizon"])
    raise ValueError(f"unknown kl_ctrl.type {kind!r}; expected 'fixed' or 'adaptive'")
