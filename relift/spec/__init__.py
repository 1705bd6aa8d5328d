"""The typed run spec: every value a run uses, checked and derived once, then passed down.

The entry points turn the Hydra config into these frozen dataclasses (``trainer/plan/``); the
trainers, the worker groups and the workers read attributes of the section they are given and
never look a config key up again. Sections live here, in the library layer, so that ``workers/``
can type their inputs without importing ``trainer/``. :func:`spec_to_json` writes a spec beside a
run's checkpoints and metrics (``run_spec.json``) so the run can be inspected and reproduced.
"""

from relift.spec.run import (
    SPEC_FILE,
    OfflineBatchPlan,
    OfflineRunSpec,
    PolicyWorkerSpec,
    RLBatchPlan,
    RLRunSpec,
    load_spec_json,
    save_spec_json,
    spec_to_dict,
)
from relift.spec.sections import (
    ActorSpec,
    AlgorithmSpec,
    CheckpointSpec,
    CustomRewardSpec,
    DataSpec,
    FSDPSpec,
    KLControlSpec,
    LossSpec,
    MicroBatching,
    ModelSpec,
    OfflineDataSpec,
    OptimSpec,
    PolicyLossSpec,
    RayInitSpec,
    RefSpec,
    ReliftSpec,
    RewardSpec,
    RolloutSpec,
    SamplingSpec,
    TrainerSpec,
    WorldSpec,
)

__all__ = [
    "SPEC_FILE", "ActorSpec", "MicroBatching", "OfflineBatchPlan", "RLBatchPlan", "AlgorithmSpec", "CheckpointSpec",
    "CustomRewardSpec", "DataSpec", "FSDPSpec", "KLControlSpec", "LossSpec", "ModelSpec", "OfflineDataSpec",
    "OfflineRunSpec", "OptimSpec", "PolicyLossSpec", "PolicyWorkerSpec", "RLRunSpec", "RayInitSpec", "RefSpec",
    "ReliftSpec", "RewardSpec", "RolloutSpec", "SamplingSpec", "TrainerSpec", "WorldSpec", "load_spec_json",
    "save_spec_json", "spec_to_dict",
]
