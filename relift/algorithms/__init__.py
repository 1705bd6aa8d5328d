"""Algorithm library: advantage estimators, losses and their aggregation, KL controllers.

Pure tensor functions with no Ray, no model and no device assumptions, so the driver, the workers
and the tests all call the same code.
"""

from relift.algorithms.advantages import (
    apply_kl_penalty_to_rewards,
    compute_advantage,
    get_adv_estimator,
    list_adv_estimators,
    register_adv_estimator,
)
from relift.algorithms.kl_control import AdaptiveKLController, FixedKLController, get_kl_controller
from relift.algorithms.losses import (
    agg_loss,
    compute_policy_loss,
    dpo_loss,
    kl_penalty,
    loss_normalizers,
    redi_loss,
    sft_loss,
    simpo_loss,
)
from relift.algorithms.masked import masked_mean, masked_sum, masked_var, masked_whiten

__all__ = [
    "AdaptiveKLController", "FixedKLController", "agg_loss", "apply_kl_penalty_to_rewards",
    "compute_advantage", "compute_policy_loss", "dpo_loss", "get_adv_estimator", "get_kl_controller",
    "kl_penalty", "list_adv_estimators", "loss_normalizers", "masked_mean", "masked_sum", "masked_var",
    "masked_whiten", "redi_loss", "register_adv_estimator", "sft_loss", "simpo_loss",
]
