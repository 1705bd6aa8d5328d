"""Online RL entry point: ``python -m trainer.main_rl [hydra overrides]``.

Composes ``trainer/config/rl_trainer.yaml`` with the command-line overrides, checks it into a plan
(:mod:`trainer.plan`), prints the plan, and hands both to ``trainer.rl_trainer.run(config, plan)``.
With ``trainer.dry_run=true`` it stops after printing the plan: no Ray, no workers, no model load.
A config that cannot run exits with status 2 and one line per problem on stderr.
``--cfg job`` prints the composed config (Hydra's own flag).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import hydra
from omegaconf import DictConfig

from trainer.plan import PlanError, build_rl_plan, count_parquet_rows

logger = logging.getLogger(__name__)

EXIT_BAD_CONFIG = 2


def run_main(cfg: DictConfig) -> int:
    """Check, print the plan, then run (unless ``trainer.dry_run``); returns the exit status."""
    try:
        plan = build_rl_plan(cfg, dataset_len=count_parquet_rows(cfg.data.get("train_files")))
    except PlanError as e:
        print(f"[relift] {e}", file=sys.stderr, flush=True)
        return EXIT_BAD_CONFIG
    print(plan.render(), flush=True)
    if cfg.trainer.get("dry_run", False):
        print("[relift] trainer.dry_run=true: config checked, stopping before any worker starts", flush=True)
        return 0
    rl_trainer = _import_trainer("trainer.rl_trainer")
    rl_trainer.run(cfg, plan)
    return 0


def _import_trainer(module: str) -> Any:
    import importlib  # noqa: PLC0415

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name == module:
            raise ModuleNotFoundError(f"{module} is not in this checkout yet; the config and plan are fine "
                                      "(trainer.dry_run=true checks them without it)", name=module) from e
        raise


@hydra.main(config_path="config", config_name="rl_trainer", version_base=None)
def main(cfg: DictConfig) -> None:
    rc = run_main(cfg)
    if rc:
        sys.exit(rc)


if __name__ == "__main__":
    main()
