"""Offline entry point (SFT / REDI / DPO / SimPO): ``python -m trainer.main_offline [hydra overrides]``.

Composes ``trainer/config/offline_trainer.yaml``, checks it into a run spec (:mod:`trainer.plan`),
prints it, and hands the spec to ``trainer.offline_trainer.run(spec)``; ``trainer.dry_run=true``
stops after the plan.
A config that cannot run exits with status 2 and one line per problem on stderr.
"""

from __future__ import annotations

from omegaconf import DictConfig

from relift.spec import OfflineRunSpec
from trainer.entry import hydra_entry, plan_then_run
from trainer.plan import build_offline_plan


def train(spec: OfflineRunSpec) -> None:
    """Run the trainer on a checked spec (imported here: a dry run never loads it)."""
    from trainer.offline_trainer import run  # noqa: PLC0415

    run(spec)


def run_main(cfg: DictConfig) -> int:
    """Check, print the spec, then train (unless ``trainer.dry_run``); returns the exit status."""
    return plan_then_run(cfg, build_offline_plan, train)


main = hydra_entry("offline_trainer", run_main)


if __name__ == "__main__":
    main()
