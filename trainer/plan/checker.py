"""Reading config keys with checks that record problems, and the checks every entry point shares.

:class:`ConfigChecker` reads one key at a time and, instead of raising, records a problem that
names the key; the plan builders collect every problem and raise one :class:`PlanError`. Nothing
here starts Ray, loads a model or executes user code (a custom reward file is parsed, not imported).
This is the one place (with the compatibility aliases) where config keys are looked up by name.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

__all__ = ["PlanError", "ConfigChecker", "CONFIG_DIR", "KNOWN_ADV_ESTIMATORS", "check_files", "check_model_path",
           "max_positions", "check_custom_reward", "count_parquet_rows", "compose_config", "known_adv_estimators",
           "loss_agg_modes", "kl_kinds"]

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"

# used when relift.algorithms.advantages cannot be imported (its registry is the authority)
KNOWN_ADV_ESTIMATORS = ("grpo", "reinforce_plus_plus", "reinforce_plus_plus_baseline", "rloo")
_LOSS_AGG_MODES = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")
_KL_KINDS = ("k1", "kl", "abs", "k2", "mse", "k3", "low_var_kl")
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_ABSENT = object()

class PlanError(ValueError):
    """The config cannot run; ``problems`` lists every reason, one line each."""

    def __init__(self, problems: Sequence[str], what: str = "config") -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        n = len(self.problems)
        super().__init__(f"invalid {what} ({n} problem{'s' if n != 1 else ''}):\n{lines}")


# ----------------------------------------------------------------------------------------------------
# reading and checking single keys


class ConfigChecker:
    """Typed reads of config keys that record a problem (naming the key) instead of raising."""

    def __init__(self, cfg: Any) -> None:
        if not isinstance(cfg, DictConfig):
            cfg = OmegaConf.create(cfg if cfg is not None else {})
        self.cfg = cfg
        self.problems: list[str] = []
        self.warnings: list[str] = []

    def fail(self, msg: str) -> None:
        self.problems.append(msg)

    def warn(self, msg: str) -> None:
        self.warnings.append(msg)

    def raw(self, key: str, default: Any = None) -> Any:
        val = OmegaConf.select(self.cfg, key, default=_ABSENT)
        if val is _ABSENT:
            return default
        if isinstance(val, (DictConfig, ListConfig)):
            return OmegaConf.to_container(val, resolve=True)
        return val

    def has(self, key: str) -> bool:
        return OmegaConf.select(self.cfg, key, default=_ABSENT) is not _ABSENT

    def int(self, key: str, *, min_value: int | None = None, allow_none: bool = False,
            default: Any = None) -> int | None:
        val = self.raw(key, default)
        if val is None:
            if not allow_none:
                self.fail(f"{key} is not set (expected an integer{_min_txt(min_value)})")
            return None
        if isinstance(val, bool) or not isinstance(val, int):
            if isinstance(val, float) and val.is_integer():
                val = int(val)
            else:
                self.fail(f"{key} must be an integer, got {val!r}")
                return None
        if min_value is not None and val < min_value:
            self.fail(f"{key} ({val}) must be >= {min_value}")
            return None
        return val

    def float(self, key: str, *, min_value: float | None = None, max_value: float | None = None,
              allow_none: bool = False, strict_min: bool = False, default: Any = None) -> float | None:
        val = self.raw(key, default)
        if val is None:
            if not allow_none:
                self.fail(f"{key} is not set (expected a number)")
            return None
        if isinstance(val, bool) or not isinstance(val, (int, float)) or not math.isfinite(val):
            self.fail(f"{key} must be a finite number, got {val!r}")
            return None
        val = float(val)
        if min_value is not None and (val <= min_value if strict_min else val < min_value):
            self.fail(f"{key} ({val:g}) must be {'>' if strict_min else '>='} {min_value:g}")
            return None
        if max_value is not None and val > max_value:
            self.fail(f"{key} ({val:g}) must be <= {max_value:g}")
            return None
        return val

    def bool(self, key: str, default: bool = False) -> bool:
        val = self.raw(key, default)
        if val is None:
            return default
        if not isinstance(val, bool):
            self.fail(f"{key} must be true or false, got {val!r}")
            return default
        return val

    def choice(self, key: str, choices: Iterable[str], *, allow_none: bool = False, default: Any = None,
               what: str = "value") -> str | None:
        choices = tuple(choices)
        val = self.raw(key, default)
        if val is None and allow_none:
            return None
        if val not in choices:
            self.fail(f"{key}: unknown {what} {val!r}; choose one of {', '.join(choices)}")
            return None
        return val

    def str_list(self, key: str) -> list[str]:
        """A string or a list of strings as a list (``[]`` for null)."""
        val = self.raw(key)
        if val is None:
            return []
        if isinstance(val, str):
            return [val]
        if isinstance(val, (list, tuple)) and all(isinstance(v, str) for v in val):
            return list(val)
        self.fail(f"{key} must be a path or a list of paths, got {val!r}")
        return []


def _min_txt(min_value: int | None) -> str:
    return f" >= {min_value}" if min_value is not None else ""


def known_adv_estimators() -> tuple[str, ...]:
    try:
        from relift.algorithms.advantages import list_adv_estimators  # noqa: PLC0415 - torch import
    except ImportError:
        return KNOWN_ADV_ESTIMATORS
    return tuple(list_adv_estimators())


def loss_agg_modes() -> tuple[str, ...]:
    try:
        from relift.algorithms.losses import LOSS_AGG_MODES  # noqa: PLC0415
    except ImportError:
        return _LOSS_AGG_MODES
    return tuple(LOSS_AGG_MODES)


def kl_kinds() -> tuple[str, ...]:
    try:
        from relift.algorithms.losses import KL_PENALTY_KINDS  # noqa: PLC0415
    except ImportError:
        return _KL_KINDS
    return tuple(KL_PENALTY_KINDS)


# ----------------------------------------------------------------------------------------------------
# paths


def _is_remote(path: str) -> bool:
    return bool(_URL.match(path))


def check_files(c: ConfigChecker, key: str, required: bool) -> list[str]:
    files = c.str_list(key)
    if not files:
        if required:
            c.fail(f"{key} is not set: pass {key}=/path/to/file.parquet (or a list [a.parquet,b.parquet])")
        return []
    missing = [f for f in files if not _is_remote(f) and not Path(f).expanduser().exists()]
    for f in missing:
        c.fail(f"{key}: file not found: {f}")
    return files


def check_model_path(c: ConfigChecker, key: str, required: bool = True) -> dict[str, Any] | None:
    """A local checkpoint dir (with config.json) or a hub id; returns the local config.json, if any."""
    path = c.raw(key)
    if path is None:
        if required:
            c.fail(f"{key} is not set: pass a local HF checkpoint dir or a hub id like Qwen/Qwen2.5-Math-1.5B")
        return None
    if not isinstance(path, str) or not path:
        c.fail(f"{key} must be a path or a hub id, got {path!r}")
        return None
    local = Path(path).expanduser()
    if local.exists():
        if not local.is_dir():
            c.fail(f"{key}: {path} is a file; expected a checkpoint directory (with config.json)")
            return None
        cfg_file = local / "config.json"
        if not cfg_file.is_file():
            c.fail(f"{key}: {path} has no config.json; expected a Hugging Face checkpoint directory")
            return None
        try:
            return json.loads(cfg_file.read_text())
        except (OSError, ValueError) as e:
            c.fail(f"{key}: cannot read {cfg_file}: {e}")
            return None
    if _HUB_ID.match(path) and ".." not in path:
        return None  # a hub id: downloaded (or found in the HF cache) when the workers load it
    c.fail(f"{key}: {path} does not exist and does not look like a hub id (org/name)")
    return None


def max_positions(model_config: dict[str, Any] | None, override: Any) -> int | None:
    if isinstance(override, dict) and isinstance(override.get("max_position_embeddings"), int):
        return override["max_position_embeddings"]
    if not model_config:
        return None
    for cfg in (model_config, model_config.get("text_config") or {}):
        val = cfg.get("max_position_embeddings")
        if isinstance(val, int) and val > 0:
            return val
    return None


def check_custom_reward(c: ConfigChecker, prefix: str) -> str | None:
    """The custom reward file exists and defines the function; parsed with ast, never executed."""
    path = c.raw(f"{prefix}.path")
    if path is None:
        return None
    name = c.raw(f"{prefix}.name") or "compute_score"
    p = Path(str(path)).expanduser()
    if not p.is_file():
        c.fail(f"{prefix}.path: file not found: {path}")
        return None
    try:
        tree = ast.parse(p.read_text(), filename=str(p))
    except (SyntaxError, ValueError, OSError) as e:
        c.fail(f"{prefix}.path: cannot parse {path}: {e}")
        return None
    defined: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Assign):
            defined.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            defined.add(node.target.id)
    if name not in defined:
        funcs = sorted(n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
        c.fail(f"{prefix}.name: {path} defines no function {name!r} (functions there: {', '.join(funcs) or 'none'})")
        return None
    return f"{path}:{name}"


def count_parquet_rows(files: Any) -> int | None:
    """Rows in local parquet files from their footers (cheap); None if any is remote or unreadable.

    The count is before any length filtering, so a plan built from it is an upper bound on steps
    when ``truncation=filter``.
    """
    if files is None:
        return None
    if isinstance(files, (DictConfig, ListConfig)):
        files = OmegaConf.to_container(files, resolve=True)
    if isinstance(files, str):
        files = [files]
    try:
        import pyarrow.parquet as pq  # noqa: PLC0415
    except ImportError:  # pragma: no cover - a dependency
        return None
    total = 0
    for f in files:
        if not isinstance(f, str) or _is_remote(f):
            return None
        p = Path(f).expanduser()
        parts = sorted(p.glob("*.parquet")) if p.is_dir() else [p]
        try:
            for part in parts:
                total += pq.ParquetFile(part).metadata.num_rows
        except Exception:  # noqa: BLE001 - a missing/corrupt file is reported by the plan or the loader
            return None
    return total



def compose_config(config_name: str = "rl_trainer", overrides: Sequence[str] = ()) -> DictConfig:
    """Compose ``trainer/config/<config_name>.yaml`` with Hydra overrides, as the entry points do.

    For tests and tools that want the config without ``@hydra.main`` (no working-dir changes, no
    logging setup). Interpolations are left unresolved, exactly like the entry points see them.
    verl / ReLIFT keys are ported first (:mod:`trainer.plan.compat`; notices on stderr); a key
    relift rejects raises :class:`PlanError`.
    """
    from hydra import compose, initialize_config_dir  # noqa: PLC0415

    from trainer.plan.compat import emit, finish, port_overrides  # noqa: PLC0415 - compat imports this module

    ported = port_overrides(config_name, list(overrides))
    if ported.problems:
        raise PlanError(ported.problems)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose(config_name=config_name, overrides=ported.overrides)
    problems = finish(cfg, ported)
    if problems:
        raise PlanError(problems)
    emit(ported.notices)
    return cfg
