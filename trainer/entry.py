"""What the training entry points share: check the config into a run spec, print it, stop on dry run.

``python -m trainer.main_rl`` and ``python -m trainer.main_offline`` differ only in the spec they
build and the trainer they hand it to. A config that cannot run is reported before any worker
starts, one line per problem on stderr, with exit status :data:`EXIT_BAD_CONFIG` (every entry point
uses it).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

from omegaconf import DictConfig

from trainer.plan import PlanError, count_parquet_rows, render_spec

__all__ = ["EXIT_BAD_CONFIG", "plan_then_run"]

EXIT_BAD_CONFIG = 2

Spec = TypeVar("Spec")


def plan_then_run(cfg: DictConfig, build_plan: Callable[..., Spec], train: Callable[[Spec], Any]) -> int:
    """Build and print the run spec, then ``train(spec)`` unless ``trainer.dry_run``; the exit status.

    ``train`` imports the trainer only when called: a dry run never imports it or its workers.
    """
    try:
        spec = build_plan(cfg, dataset_len=count_parquet_rows(cfg.data.get("train_files")))
    except PlanError as e:
        print(f"[relift] {e}", file=sys.stderr, flush=True)
        return EXIT_BAD_CONFIG
    print(render_spec(spec), flush=True)
    if spec.trainer.dry_run:
        print("[relift] trainer.dry_run=true: config checked, stopping before any worker starts", flush=True)
        return 0
    train(spec)
    return 0
