"""Offline entry point (SFT / REDI / DPO / SimPO): ``python -m trainer.main_offline [hydra overrides]``.

Composes ``trainer/config/offline_trainer.yaml``, checks it into a plan, prints it, and hands both
to ``trainer.offline_trainer.run(config, plan)``; ``trainer.dry_run=true`` stops after the plan.
A config that cannot run exits with status 2 and one line per problem on stderr.
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from trainer.main_rl import EXIT_BAD_CONFIG, _import_trainer
from trainer.plan import PlanError, build_offline_plan, count_parquet_rows

logger = logging.getLogger(__name__)


def run_main(cfg: DictConfig) -> int:
    """Check, print the plan, then run (unless ``trainer.dry_run``); returns the exit status."""
    try:
        plan = build_offline_plan(cfg, dataset_len=count_parquet_rows(cfg.data.get("train_files")))
    except PlanError as e:
        print(f"[relift] {e}", file=sys.stderr, flush=True)
        return EXIT_BAD_CONFIG
    print(plan.render(), flush=True)
    if cfg.trainer.get("dry_run", False):
        print("[relift] trainer.dry_run=true: config checked, stopping before any worker starts", flush=True)
        return 0
    offline_trainer = _import_trainer("trainer.offline_trainer")
    offline_trainer.run(cfg, plan)
    return 0


@hydra.main(config_path="config", config_name="offline_trainer", version_base=None)
def main(cfg: DictConfig) -> None:
    rc = run_main(cfg)
    if rc:
        sys.exit(rc)


if __name__ == "__main__":
    main()
