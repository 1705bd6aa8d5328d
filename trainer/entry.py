"""What the training entry points share: check the config into a plan, print it, stop on dry run.

``python -m trainer.main_rl`` and ``python -m trainer.main_offline`` differ only in the plan they build
and the trainer they hand it to. A config that cannot run is reported before any worker starts, one
line per problem on stderr, with exit status :data:`EXIT_BAD_CONFIG` (every entry point uses it).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig

from trainer.plan import PlanError, count_parquet_rows

__all__ = ["EXIT_BAD_CONFIG", "plan_then_run"]

EXIT_BAD_CONFIG = 2


def plan_then_run(cfg: DictConfig, build_plan: Callable[..., Any], trainer_module: str) -> int:
    """Build and print the plan, then ``<trainer_module>.run(cfg, plan)`` unless ``trainer.dry_run``.

    The trainer module is imported only after the plan passed: a dry run never imports the trainer
    or its workers. Returns the exit status.
    """
    try:
        plan = build_plan(cfg, dataset_len=count_parquet_rows(cfg.data.get("train_files")))
    except PlanError as e:
        print(f"[relift] {e}", file=sys.stderr, flush=True)
        return EXIT_BAD_CONFIG
    print(plan.render(), flush=True)
    if cfg.trainer.get("dry_run", False):
        from trainer.dry_run_preview import print_preview  # noqa: PLC0415 - redi branch: first row as the model sees it

        rc = print_preview(cfg, EXIT_BAD_CONFIG)
        print("[relift] trainer.dry_run=true: config checked, stopping before any worker starts", flush=True)
        return rc
    importlib.import_module(trainer_module).run(cfg, plan)
    return 0
