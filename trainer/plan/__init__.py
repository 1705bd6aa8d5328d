"""Config -> checked run spec: every problem found before any worker starts.

``build_rl_plan(cfg)`` / ``build_offline_plan(cfg)`` read a composed Hydra config (or a plain dict
with the same keys), check it section by section and return the frozen run spec
(:class:`relift.spec.RLRunSpec` / :class:`relift.spec.OfflineRunSpec`) that the trainer and its
workers receive; :func:`render_spec` is the table the entry points print. All problems are
collected and raised together as one :class:`PlanError`, each naming its keys and showing the
arithmetic.

Device checks (``trainer.device=cuda`` without CUDA, the vLLM rollout on a CPU machine or without
the vllm package) run only with ``trainer.check_devices=true`` (the default), so a GPU recipe's
config can be planned on a CPU machine with ``trainer.check_devices=false trainer.dry_run=true``.

Files: ``checker.py`` (typed key reads, shared path/model/reward checks), ``common.py`` (sections
both trainers share), ``rl_sections.py`` + ``rl.py`` (online RL), ``offline.py``, ``table.py``.
"""

from trainer.plan.checker import (
    CONFIG_DIR,
    KNOWN_ADV_ESTIMATORS,
    ConfigChecker,
    PlanError,
    check_custom_reward,
    check_files,
    check_model_path,
    compose_config,
    count_parquet_rows,
    max_positions,
)
from trainer.plan.common import check_devices_available
from trainer.plan.offline import build_offline_plan
from trainer.plan.rl import build_policy_worker_spec, build_rl_plan
from trainer.plan.table import render_plan, render_spec

__all__ = [
    "CONFIG_DIR", "KNOWN_ADV_ESTIMATORS", "ConfigChecker", "PlanError", "build_offline_plan",
    "build_policy_worker_spec",
    "build_rl_plan", "check_custom_reward", "check_devices_available", "check_files", "check_model_path",
    "compose_config", "count_parquet_rows", "max_positions", "render_plan", "render_spec",
]
