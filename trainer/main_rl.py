"""Online RL entry point: ``python -m trainer.main_rl [hydra overrides]``.

Composes ``trainer/config/rl_trainer.yaml`` with the command-line overrides, checks it into a run
spec (:mod:`trainer.plan`), prints the plan, and hands the spec to ``trainer.rl_trainer.run(spec)``.
With ``trainer.dry_run=true`` it stops after printing the plan: no Ray, no workers, no model load.
A config that cannot run exits with status 2 and one line per problem on stderr.
``--cfg job`` prints the composed config (Hydra's own flag).
"""

from __future__ import annotations

from omegaconf import DictConfig

from relift.spec import RLRunSpec
from trainer.entry import hydra_entry, plan_then_run
from trainer.plan import build_rl_plan


def train(spec: RLRunSpec) -> None:
    """Run the trainer on a checked spec (imported here: a dry run never loads it)."""
    from trainer.rl_trainer import run  # noqa: PLC0415

    run(spec)


def run_main(cfg: DictConfig) -> int:
    """Check, print the spec, then train (unless ``trainer.dry_run``); returns the exit status."""
    return plan_then_run(cfg, build_rl_plan, train)


main = hydra_entry("rl_trainer", run_main)


if __name__ == "__main__":
    main()
