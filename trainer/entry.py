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

import hydra
from omegaconf import DictConfig

from trainer.plan import CONFIG_DIR, PlanError, count_parquet_rows, render_spec

__all__ = ["EXIT_BAD_CONFIG", "plan_then_run", "exit_status", "hydra_entry"]

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
        from trainer.dry_run_preview import print_preview  # noqa: PLC0415 - the first row as the model sees it

        rc = print_preview(spec, EXIT_BAD_CONFIG)
        print("[relift] trainer.dry_run=true: config checked, stopping before any worker starts", flush=True)
        return rc
    from trainer.run_errors import RunStopped  # noqa: PLC0415

    try:
        train(spec)
    except RunStopped as e:  # run lock held, checkpoint of another run, failed save: one message, no traceback
        print(f"[relift] {e}", file=sys.stderr, flush=True)
        return e.exit_code
    return 0


def exit_status(run: Callable[[DictConfig], Any], cfg: DictConfig,
                bad_input: tuple[type[Exception], ...] = (PlanError,)) -> int:
    """``run(cfg)``; a bad config or input is one message on stderr and :data:`EXIT_BAD_CONFIG`."""
    try:
        run(cfg)
    except bad_input as e:
        print(f"[relift] {e}", file=sys.stderr, flush=True)
        return EXIT_BAD_CONFIG
    return 0


def hydra_entry(config_name: str, run_main: Callable[[DictConfig], int]) -> Callable[[], None]:
    """The ``main()`` of an entry point: Hydra composes ``trainer/config/<config_name>.yaml`` with the
    command line, ``run_main`` runs it, a non-zero status becomes the process's exit code."""

    @hydra.main(config_path=str(CONFIG_DIR), config_name=config_name, version_base=None)
    def main(cfg: DictConfig) -> None:
        rc = run_main(cfg)
        if rc:
            sys.exit(rc)

    return main
