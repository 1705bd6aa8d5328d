"""What the training entry points share: check the config into a run spec, print it, stop on dry run.

``python -m trainer.main_rl`` and ``python -m trainer.main_offline`` differ only in the spec they
build and the trainer they hand it to. A config that cannot run is reported before any worker
starts, one line per problem on stderr, with exit status :data:`EXIT_BAD_CONFIG` (every entry point
uses it). A run stopped by SIGTERM, Ctrl-C or the hang watchdog ends with one line and the exit
status of :mod:`trainer.interrupts` (75 saved and resumable, 130 stopped at once, 3 hung); rewards
that keep failing stop with :data:`EXIT_REWARDS_FAILED` (4).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import hydra
from omegaconf import DictConfig

from trainer.plan import CONFIG_DIR, PlanError, count_parquet_rows, render_spec

__all__ = ["EXIT_BAD_CONFIG", "EXIT_REWARDS_FAILED", "plan_then_run", "exit_status", "hydra_entry"]

EXIT_BAD_CONFIG = 2
EXIT_REWARDS_FAILED = 4  # reward.max_error_fraction exceeded for reward.max_error_steps steps in a row

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
    from relift.rewards.guard import RewardFailureError  # noqa: PLC0415
    from relift.single_controller.errors import TopologyError  # noqa: PLC0415 - without importing Ray
    from trainer.interrupts import report_stop, stop_behind  # noqa: PLC0415
    from trainer.run_errors import RunStopped  # noqa: PLC0415

    try:
        train(spec)
    except RunStopped as e:  # run lock held, checkpoint of another run, failed save: one message, no traceback
        print(f"[relift] {e}", file=sys.stderr, flush=True)
        return e.exit_code
    except TopologyError as e:  # the cluster does not match trainer.nnodes x n_gpus_per_node
        print(f"[relift] {e}", file=sys.stderr, flush=True)
        return EXIT_BAD_CONFIG
    except RewardFailureError as e:  # the scorer fails: its first error and row, no traceback
        print(f"[relift] {e}", file=sys.stderr, flush=True)
        return EXIT_REWARDS_FAILED
    except BaseException as e:  # SIGTERM / Ctrl-C / the hang watchdog: one line, its own exit status
        stop = stop_behind(e)
        if stop is None:
            raise
        return report_stop(stop)
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
    command line, ``run_main`` runs it, a non-zero status becomes the process's exit code. verl and
    ReLIFT keys on the command line are ported first (:mod:`trainer.plan.compat`)."""

    from trainer.plan.compat import emit, finish, port_argv  # noqa: PLC0415 - verl / ReLIFT keys

    ported = None

    @hydra.main(config_path=str(CONFIG_DIR), config_name=config_name, version_base=None)
    def main(cfg: DictConfig) -> None:
        if ported is not None:
            problems = finish(cfg, ported)
            if problems:
                print(f"[relift] {PlanError(problems)}", file=sys.stderr, flush=True)
                sys.exit(EXIT_BAD_CONFIG)
            emit(ported.notices)
        rc = run_main(cfg)
        if rc:
            sys.exit(rc)

    def entry() -> None:
        """Port verl / ReLIFT overrides in ``sys.argv`` (a rejected key: exit 2 before Hydra), then run."""
        nonlocal ported
        ported = port_argv(config_name, sys.argv)
        if ported.problems:  # the problems alone: notices would bury them
            print(f"[relift] {PlanError(ported.problems)}", file=sys.stderr, flush=True)
            sys.exit(EXIT_BAD_CONFIG)
        emit(ported.notices)  # now, so ``--cfg job`` shows them too; finish() adds its own
        ported.notices.clear()
        main()

    return entry
