"""Shared fixtures: a hermetic local Ray instance, the shared data folder, tiny-model paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# ../shared/data beside the checkout (CI clones main with shared/ beside it); RELIFT_SHARED_DATA overrides
SHARED_DATA = Path(os.environ.get("RELIFT_SHARED_DATA", REPO.parent / "shared" / "data"))


def pytest_configure(config):
    # registered here, not in pyproject.toml: a pyproject change rebuilds every venv (scripts/setup_env.sh)
    config.addinivalue_line(
        "markers", "faults: fault injection: kills, signals, hangs, doctored or missing files (docs/reliability.md)")


def pytest_collection_modifyitems(config, items):
    try:
        import torch
        has_cuda = torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        has_cuda = False
    if has_cuda:
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared data folder not found at {SHARED_DATA} (set RELIFT_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ray_local():
    """A fresh local Ray instance for the whole session (never joins an outside cluster)."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=True,
                 object_store_memory=512 * 1024 * 1024,
                 runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}})
    yield ray
    ray.shutdown()


@pytest.fixture(autouse=True, scope="module")
def _release_leftover_placement_groups():
    """Modules share one 4-CPU Ray instance: a group that a test module did not release (a worker
    group shut down without ``release_resources=True``, a failing test) must not starve the next
    module's placement groups. Runs after the module's own fixtures are torn down."""
    yield
    import sys

    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return
    from ray._raylet import PlacementGroupID
    from ray.util.placement_group import PlacementGroup

    leaked = []
    for pg_id, info in ray.util.placement_group_table().items():
        if info.get("state") != "REMOVED":
            leaked.append(info.get("name") or pg_id)
            ray.util.remove_placement_group(PlacementGroup(PlacementGroupID(bytes.fromhex(pg_id))))
    if leaked:  # shown in pytest's warnings summary: the module should shut its groups down itself
        import warnings

        warnings.warn(f"released placement groups a test module left behind: {sorted(leaked)}", stacklevel=1)
