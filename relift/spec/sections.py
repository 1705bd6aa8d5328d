"""One frozen dataclass per config section, each value already checked and derived.

Field names follow the yaml keys (verl's names) so a reader can map ``spec.actor.clip_ratio_low``
back to ``actor_rollout_ref.actor.clip_ratio_low``. No field has a default: the one default of a
setting lives in the yaml (``trainer/config/*.yaml``), and the plan builder fills every field.
Derived values (resolved warmup steps, per-worker batch sizes, the resolved device) sit beside the
values they come from, named for what they are.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


def resolve_warmup(lr_warmup_steps: int | None, ratio: float | None, total: int | None) -> int | None:
    """``lr_warmup_steps`` when >= 0, else ``lr_warmup_steps_ratio`` x total steps (None until known)."""
    if lr_warmup_steps is not None and lr_warmup_steps >= 0:
        return lr_warmup_steps
    if total is None:
        return None
    return int((ratio or 0.0) * total)


@dataclass(frozen=True)
class WorldSpec:
    """Where the workers run: ``nnodes`` x ``n_gpus_per_node`` processes on ``device``."""

    nnodes: int
    n_gpus_per_node: int
    device: str              # cpu | cuda once checked; the requested value (auto) when not checked
    devices_checked: bool
    backend: str             # auto | ray | inprocess (auto is resolved when the groups start)
    cpu_threads: int | None  # explicit torch threads per CPU worker; None = the worker's rule (workers/cpu_threads.py)
    cpu_threads_from: str    # its source: trainer.cpu_threads | RELIFT_CPU_THREADS | OMP_NUM_THREADS | auto

    @property
    def size(self) -> int:
        return self.nnodes * self.n_gpus_per_node


@dataclass(frozen=True)
class RayInitSpec:
    num_cpus: int | None
    address: str | None
    include_dashboard: bool


@dataclass(frozen=True)
class DataSpec:
    """``data.*`` of the RL trainer."""

    train_files: tuple[str, ...]
    val_files: tuple[str, ...]
    prompt_key: str
    reward_fn_key: str
    target_key: str | None
    max_prompt_length: int
    max_response_length: int
    max_target_length: int
    train_batch_size: int
    val_batch_size: int | None
    truncation: str          # error | left | right | filter (filter_overlong_prompts folded in)
    shuffle: bool
    seed: int
    dataloader_num_workers: int
    apply_chat_template: bool


@dataclass(frozen=True)
class OfflineDataSpec:
    """``data.*`` of the offline trainer (SFT or preference pairs)."""

    kind: str                # sft | pairs
    train_files: tuple[str, ...]
    val_files: tuple[str, ...]
    prompt_key: str
    response_key: str
    chosen_key: str
    rejected_key: str
    max_length: int
    truncation: str
    train_batch_size: int
    micro_batch_size_per_gpu: int
    val_batch_size: int
    shuffle: bool
    seed: int
    dataloader_num_workers: int
    apply_chat_template: bool


@dataclass(frozen=True)
class ModelSpec:
    path: str
    tokenizer_path: str      # model.path when the yaml leaves it null
    trust_remote_code: bool
    enable_gradient_checkpointing: bool
    dtype: str               # float32 | bfloat16 | float16 (the master parameters)
    attn_implementation: str | None
    override_config: dict[str, Any]
    load_format: str         # auto | dummy
    use_remove_padding: bool  # actor passes: length-sorted micro-batches (fixed or token-budget), each trimmed
    share_prompt_prefix: bool  # actor passes: each distinct prompt of a micro-batch runs once, its K/V shared
    lean_activations: bool = False  # training: RMSNorm / SwiGLU keep fewer tensors for the backward (Llama-shaped)
    lean_forward: bool = False  # actor passes in plain tensor ops (Llama-shaped, one unsharded rank)


@dataclass(frozen=True)
class OptimSpec:
    lr: float
    weight_decay: float
    betas: tuple[float, float]
    lr_scheduler_type: str   # constant | cosine | linear
    warmup_steps: int | None  # resolved from lr_warmup_steps / lr_warmup_steps_ratio; None until total is known
    lr_warmup_steps: int     # as given (-1: use the ratio)
    lr_warmup_steps_ratio: float
    min_lr_ratio: float
    total_training_steps: int | None  # None until the data is counted (remote files)

    def with_total_steps(self, total: int) -> OptimSpec:
        return dataclasses.replace(self, total_training_steps=total,
                                   warmup_steps=resolve_warmup(self.lr_warmup_steps, self.lr_warmup_steps_ratio, total))


@dataclass(frozen=True)
class FSDPSpec:
    param_offload: bool
    optimizer_offload: bool
    mixed_precision: str     # auto | bf16 | fp16 | fp32
    reshard_after_forward: bool
    init_on_rank0: bool


@dataclass(frozen=True)
class CheckpointSpec:
    save_contents: tuple[str, ...]
    load_contents: tuple[str, ...]


@dataclass(frozen=True)
class PolicyLossSpec:
    """The PPO-style policy loss of the RL update."""

    clip_ratio_low: float
    clip_ratio_high: float
    clip_ratio_c: float | None
    loss_agg_mode: str
    loss_remove_clip: bool
    entropy_coeff: float
    use_kl_loss: bool
    kl_loss_coef: float
    kl_loss_type: str


@dataclass(frozen=True)
class MicroBatching:
    """How one worker splits a batch into forward/backward passes."""

    use_dynamic_bsz: bool
    micro_batch_size_per_gpu: int | None   # sequences per pass (use_dynamic_bsz=false)
    max_token_len_per_gpu: int             # token budget per pass (use_dynamic_bsz=true)


@dataclass(frozen=True)
class ActorSpec:
    """``actor_rollout_ref.actor.*`` (and the offline trainer's model/optim/loss, translated)."""

    ppo_mini_batch_size: int                  # prompts per optimiser step, as given
    sequences_per_mini_batch_per_worker: int  # = ppo_mini_batch_size x n / world size
    ppo_epochs: int
    shuffle: bool
    train_micro: MicroBatching
    log_prob_micro: MicroBatching
    policy_loss: PolicyLossSpec | None        # None for the offline trainer (no policy-gradient update)
    loss_scale_factor: float | None           # seq-mean-token-sum-norm divisor per worker
    grad_clip: float | None
    logits_chunk_size: int
    optim: OptimSpec
    fsdp: FSDPSpec
    checkpoint: CheckpointSpec


@dataclass(frozen=True)
class SamplingSpec:
    n: int
    temperature: float
    top_p: float
    top_k: int
    do_sample: bool


@dataclass(frozen=True)
class RolloutSpec:
    name: str                # hf | vllm
    sampling: SamplingSpec
    val_sampling: SamplingSpec
    prompt_length: int
    response_length: int
    calculate_log_probs: bool
    tensor_model_parallel_size: int
    gpu_memory_utilization: float
    enforce_eager: bool
    free_cache_engine: bool
    max_num_batched_tokens: int | None
    micro_batch_size: int | None   # hf: prompts per decoding batch inside a worker; None = its whole share
    engine_kwargs: dict[str, Any]  # vllm-only pass-through (dtype, max_num_seqs, enable_prefix_caching, ...)
    weight_sync_bucket_mb: int | None  # actor -> engine sync streams buckets of this many MiB (None: no actor)
    seed: int                # base sampling seed (each rank adds 1000 x rank)


@dataclass(frozen=True)
class RefSpec:
    enabled: bool            # a KL term is on (RL) or the loss is DPO (offline)
    model_path: str          # actor model path when the yaml leaves it null
    log_prob_micro: MicroBatching
    fsdp: FSDPSpec
    precompute: bool         # offline DPO: reference log-probs computed once from the untrained policy, cached


@dataclass(frozen=True)
class CustomRewardSpec:
    path: str
    name: str


@dataclass(frozen=True)
class RewardSpec:
    num_workers: int | None
    timeout: float
    think_format: bool
    custom_reward_function: CustomRewardSpec | None
    reward_fn_key: str       # column that picks the scorer (data.reward_fn_key)
    max_error_fraction: float  # a step fails when more of its samples than this fail to score
    max_error_steps: int     # failing steps in a row that stop the run (relift.rewards.guard)


@dataclass(frozen=True)
class KLControlSpec:
    type: str                # fixed | adaptive
    kl_coef: float
    horizon: int
    target_kl: float


@dataclass(frozen=True)
class AlgorithmSpec:
    adv_estimator: str
    norm_adv_by_std_in_grpo: bool
    gamma: float
    use_kl_in_reward: bool
    kl_penalty: str
    kl_ctrl: KLControlSpec


@dataclass(frozen=True)
class ReliftSpec:
    enable: bool
    max_acc: float
    sft_batch_size: int
    sft_per_worker: int | None
    buffer_size: int | None
    micro: MicroBatching
    entropy_coeff: float
    loss_agg_mode: str
    lr: float | None         # None: the RL optimiser's current lr (relift.lr null)
    sft_optimizer: str       # shared | separate
    buffer_order: str        # fifo (oldest first: no starvation) | lifo (newest first, the public code)


@dataclass(frozen=True)
class LossSpec:
    """``loss.*`` of the offline trainer."""

    type: str                # sft | redi | dpo | simpo
    alpha: float
    beta: float              # dpo 0.1 / simpo 2.0 when the yaml leaves it null
    gamma: float
    cpo_alpha: float         # simpo: weight of TRL's NLL term on the chosen completion (0 = off)


@dataclass(frozen=True)
class TrainerSpec:
    project_name: str
    experiment_name: str
    logger: tuple[str, ...]
    total_epochs: int
    total_training_steps: int | None
    save_freq: int
    test_freq: int
    val_before_train: bool
    val_only: bool
    val_capability: bool     # also log pass@k at the largest k and the solve-rate histogram per validation
    default_local_dir: str
    resume_mode: str
    resume_from_path: str | None
    resume_force: bool       # resume a checkpoint whose model / data / batch plan / algorithm differ
    max_ckpt_to_keep: int | None
    seed: int
    balance_batch: bool
    export_hf: bool
    dry_run: bool
    hang_timeout_s: float    # watchdog: no phase transition for this long stops the run; 0 = off
