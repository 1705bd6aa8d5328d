"""Section checks of the online RL config: actor, rollout, reference, reward, algorithm, ReLIFT.

Each returns its typed section (:mod:`relift.spec`); batch arithmetic that spans sections (what
must divide by what) lives in :mod:`trainer.plan.rl`.
"""

from __future__ import annotations

from relift.spec.sections import (
    ActorSpec,
    AlgorithmSpec,
    CustomRewardSpec,
    KLControlSpec,
    MicroBatching,
    PolicyLossSpec,
    RefSpec,
    ReliftSpec,
    RewardSpec,
    RolloutSpec,
    SamplingSpec,
    WorldSpec,
)
from trainer.plan.checker import (
    ConfigChecker,
    check_custom_reward,
    check_model_path,
    kl_kinds,
    known_adv_estimators,
    loss_agg_modes,
)
from trainer.plan.common import (
    check_checkpoint,
    check_fsdp,
    check_micro_batching,
    check_optim,
    per_worker,
    world_text,
)

__all__ = ["A", "RO", "check_sampling", "check_rollout", "check_actor", "check_ref", "check_reward",
           "check_algorithm", "check_relift"]

A = "actor_rollout_ref.actor"
RO = "actor_rollout_ref.rollout"
_ROLLOUTS = ("hf", "vllm")


def check_sampling(c: ConfigChecker, prefix: str) -> SamplingSpec:
    do_sample = c.bool(f"{prefix}.do_sample")
    temp = c.float(f"{prefix}.temperature", min_value=0.0)
    if do_sample and temp is not None and temp == 0.0:
        c.fail(f"{prefix}.temperature is 0 with {prefix}.do_sample=true; use do_sample=false for greedy decoding")
    return SamplingSpec(n=c.int(f"{prefix}.n", min_value=1), temperature=temp,
                        top_p=c.float(f"{prefix}.top_p", min_value=0.0, max_value=1.0, strict_min=True),
                        top_k=c.int(f"{prefix}.top_k", min_value=-1), do_sample=do_sample)


def check_rollout(c: ConfigChecker, world: WorldSpec, P: int | None, R: int | None, seed: int | None) -> RolloutSpec:
    for key, want, src in ((f"{RO}.prompt_length", P, "data.max_prompt_length"),
                           (f"{RO}.response_length", R, "data.max_response_length")):
        got = c.int(key, min_value=1, allow_none=True)
        if got is not None and want is not None and got != want:
            c.fail(f"{key} ({got}) must equal {src} ({want}); leave it at its default ${{{src}}}")
    name = c.choice(f"{RO}.name", _ROLLOUTS, what="rollout engine")
    tp = c.int(f"{RO}.tensor_model_parallel_size", min_value=1)
    W = world.size if world.nnodes and world.n_gpus_per_node else None
    if name == "hf" and tp and tp != 1:
        c.fail(f"{RO}.tensor_model_parallel_size ({tp}) must be 1 with {RO}.name=hf "
               "(tensor parallel generation needs vllm)")
    mnbt = c.int(f"{RO}.max_num_batched_tokens", min_value=1, allow_none=True)
    gpu_util = c.float(f"{RO}.gpu_memory_utilization", min_value=0.0, max_value=1.0, strict_min=True)
    if name == "vllm":
        if tp and W and W % tp:
            c.fail(f"{world_text(world)} must divide by {RO}.tensor_model_parallel_size ({tp}): "
                   f"{W} / {tp} = {W / tp:.4g}")
        # no lower bound against prompt + response: vLLM V1 (the pinned 0.30) always chunks long
        # prefills, so a per-step token budget under max_model_len is valid (the ReLIFT scripts ran 8192
        # with 1024 + 8192 tokens)
    return RolloutSpec(name=name, sampling=check_sampling(c, RO), val_sampling=check_sampling(c, f"{RO}.val_kwargs"),
                       prompt_length=P, response_length=R,
                       calculate_log_probs=c.bool(f"{RO}.calculate_log_probs"), tensor_model_parallel_size=tp,
                       gpu_memory_utilization=gpu_util, enforce_eager=c.bool(f"{RO}.enforce_eager"),
                       free_cache_engine=c.bool(f"{RO}.free_cache_engine"), max_num_batched_tokens=mnbt,
                       micro_batch_size=c.int(f"{RO}.micro_batch_size", min_value=1, allow_none=True),
                       engine_kwargs={}, seed=seed,
                       weight_sync_bucket_mb=c.int(f"{RO}.weight_sync_bucket_mb", min_value=1))


def check_policy_loss(c: ConfigChecker, epochs: int | None) -> PolicyLossSpec:
    kinds = kl_kinds()
    use_kl_loss = c.bool(f"{A}.use_kl_loss")
    kl_type = c.choice(f"{A}.kl_loss_type", kinds, what="KL estimator") if use_kl_loss else c.raw(f"{A}.kl_loss_type")
    kl_coef = c.float(f"{A}.kl_loss_coef", min_value=0.0) if use_kl_loss else c.raw(f"{A}.kl_loss_coef")
    agg = c.choice(f"{A}.loss_agg_mode", loss_agg_modes(), what="loss aggregation mode")
    remove_clip = c.bool(f"{A}.loss_remove_clip")
    if remove_clip and epochs and epochs > 1:
        c.warn(f"{A}.loss_remove_clip=true with ppo_epochs={epochs}: unclipped ratios over several epochs can blow up")
    strict = not remove_clip  # the clip constants are unused without the clip: checked only when they count
    low = c.float(f"{A}.clip_ratio_low", min_value=0.0) if strict else c.raw(f"{A}.clip_ratio_low")
    high = c.float(f"{A}.clip_ratio_high", min_value=0.0) if strict else c.raw(f"{A}.clip_ratio_high")
    dual = c.float(f"{A}.clip_ratio_c", min_value=1.0, strict_min=True, allow_none=True) if strict \
        else c.raw(f"{A}.clip_ratio_c")
    return PolicyLossSpec(clip_ratio_low=low, clip_ratio_high=high, clip_ratio_c=dual, loss_agg_mode=agg,
                          loss_remove_clip=remove_clip, entropy_coeff=c.float(f"{A}.entropy_coeff"),
                          use_kl_loss=use_kl_loss, kl_loss_coef=kl_coef, kl_loss_type=kl_type)


def check_actor(c: ConfigChecker, world: WorldSpec, n: int | None, mini_per_worker: int | None,
                longest: int | None, R: int | None, total_steps: int | None) -> ActorSpec:
    epochs = c.int(f"{A}.ppo_epochs", min_value=1)
    longest_text = f"data.max_prompt_length ({longest - R if longest and R else None}) + data.max_response_length ({R})"
    train = check_micro_batching(c, f"{A}.use_dynamic_bsz", f"{A}.ppo_micro_batch_size_per_gpu",
                                 f"{A}.ppo_max_token_len_per_gpu", longest, longest_text)
    log_prob = check_micro_batching(c, f"{RO}.log_prob_use_dynamic_bsz", f"{RO}.log_prob_micro_batch_size_per_gpu",
                                    f"{RO}.log_prob_max_token_len_per_gpu", longest, longest_text)
    loss = check_policy_loss(c, epochs)
    # seq-mean-token-sum-norm divides by a constant (the response width); FSDP averages gradients over
    # the ranks, so each rank divides by width / world size to give one process's gradient
    scale = None
    W = world.size if world.nnodes and world.n_gpus_per_node else None
    if loss.loss_agg_mode == "seq-mean-token-sum-norm" and R and W:
        scale = float(R) / W
    return ActorSpec(
        ppo_mini_batch_size=c.int(f"{A}.ppo_mini_batch_size", min_value=1),
        sequences_per_mini_batch_per_worker=mini_per_worker, ppo_epochs=epochs, shuffle=c.bool(f"{A}.shuffle"),
        train_micro=train, log_prob_micro=log_prob, policy_loss=loss, loss_scale_factor=scale,
        grad_clip=c.float(f"{A}.grad_clip", min_value=0.0, strict_min=True, allow_none=True),
        logits_chunk_size=c.int(f"{A}.logits_chunk_size", min_value=1),
        optim=check_optim(c, f"{A}.optim", total_steps), fsdp=check_fsdp(c, f"{A}.fsdp_config", world),
        checkpoint=check_checkpoint(c, f"{A}.checkpoint"),
    )


def check_ref(c: ConfigChecker, world: WorldSpec, enabled: bool, model_path: str | None,
              longest: int | None, longest_text: str) -> RefSpec:
    pre = "actor_rollout_ref.ref"
    path = c.raw(f"{pre}.model_path")
    if enabled and path is not None:
        check_model_path(c, f"{pre}.model_path")
    if enabled:
        micro = check_micro_batching(c, f"{pre}.log_prob_use_dynamic_bsz", f"{pre}.log_prob_micro_batch_size_per_gpu",
                                     f"{pre}.log_prob_max_token_len_per_gpu", longest, longest_text)
    else:  # unused without a KL term: read as given, checked only when a reference is built
        micro = MicroBatching(use_dynamic_bsz=bool(c.raw(f"{pre}.log_prob_use_dynamic_bsz")),
                              micro_batch_size_per_gpu=c.raw(f"{pre}.log_prob_micro_batch_size_per_gpu"),
                              max_token_len_per_gpu=c.raw(f"{pre}.log_prob_max_token_len_per_gpu") or 0)
    return RefSpec(enabled=enabled, model_path=str(path or model_path), log_prob_micro=micro,
                   fsdp=check_fsdp(c, f"{pre}.fsdp_config", world, trainable=False), precompute=False)


def check_reward(c: ConfigChecker) -> RewardSpec:
    custom = check_custom_reward(c, "reward.custom_reward_function")
    custom_spec = None
    if custom is not None:
        path, _, name = custom.rpartition(":")
        custom_spec = CustomRewardSpec(path=path, name=name)
    return RewardSpec(num_workers=c.int("reward.num_workers", min_value=1, allow_none=True),
                      timeout=c.float("reward.timeout", min_value=0.0, strict_min=True),
                      think_format=c.bool("reward.think_format"), custom_reward_function=custom_spec,
                      reward_fn_key=str(c.raw("data.reward_fn_key")),
                      max_error_fraction=c.float("reward.max_error_fraction", min_value=0.0, max_value=1.0),
                      max_error_steps=c.int("reward.max_error_steps", min_value=1))


def check_algorithm(c: ConfigChecker, use_kl_loss: bool) -> AlgorithmSpec:
    known = known_adv_estimators()
    est = c.raw("algorithm.adv_estimator")
    if est not in known:
        c.fail(f"algorithm.adv_estimator: unknown estimator {est!r}; known: {', '.join(known)}")
        est = None
    in_reward = c.bool("algorithm.use_kl_in_reward")
    kc = "algorithm.kl_ctrl"
    if in_reward:
        kl_penalty = c.choice("algorithm.kl_penalty", kl_kinds(), what="KL estimator")
        ctrl_type = c.choice(f"{kc}.type", ("fixed", "adaptive"), what="KL controller")
        coef = c.float(f"{kc}.kl_coef", min_value=0.0)
        adaptive = ctrl_type == "adaptive"
        target = c.float(f"{kc}.target_kl", min_value=0.0, strict_min=True) if adaptive else c.raw(f"{kc}.target_kl")
        horizon = c.int(f"{kc}.horizon", min_value=1) if adaptive else c.raw(f"{kc}.horizon")
        if use_kl_loss:
            c.warn("both actor.use_kl_loss and algorithm.use_kl_in_reward are on: the KL is counted twice")
    else:  # unused without KL in the reward
        kl_penalty, ctrl_type, coef = c.raw("algorithm.kl_penalty"), c.raw(f"{kc}.type"), c.raw(f"{kc}.kl_coef")
        target, horizon = c.raw(f"{kc}.target_kl"), c.raw(f"{kc}.horizon")
    return AlgorithmSpec(adv_estimator=est, norm_adv_by_std_in_grpo=c.bool("algorithm.norm_adv_by_std_in_grpo"),
                         gamma=c.float("algorithm.gamma", min_value=0.0, max_value=1.0), use_kl_in_reward=in_reward,
                         kl_penalty=kl_penalty,
                         kl_ctrl=KLControlSpec(type=ctrl_type, kl_coef=coef, horizon=horizon, target_kl=target))


def check_relift(c: ConfigChecker, world: WorldSpec, P: int | None) -> ReliftSpec:
    """``relift.*``; the divisibility and length checks apply only when ``relift.enable``."""
    enabled = c.bool("relift.enable")
    W = world.size if world.nnodes and world.n_gpus_per_node else None
    T = c.int("data.max_target_length", min_value=1) if enabled else c.raw("data.max_target_length")
    longest = P + T if enabled and P and T else None
    micro = check_micro_batching(c, "relift.use_dynamic_bsz", "relift.sft_micro_batch_size_per_gpu",
                                 "relift.max_token_len_per_gpu", longest,
                                 f"data.max_prompt_length ({P}) + data.max_target_length ({T})") if enabled else \
        MicroBatching(use_dynamic_bsz=bool(c.raw("relift.use_dynamic_bsz")),
                      micro_batch_size_per_gpu=c.raw("relift.sft_micro_batch_size_per_gpu"),
                      max_token_len_per_gpu=c.raw("relift.max_token_len_per_gpu") or 0)
    sft_bs = c.int("relift.sft_batch_size", min_value=1)
    per_w = None
    if enabled:
        if not c.raw("data.target_key"):
            c.fail("relift.enable=true needs demonstrations: data.target_key must name the target column")
        per_w = per_worker(c, sft_bs, f"relift.sft_batch_size ({sft_bs})", world)
        if per_w and not micro.use_dynamic_bsz and micro.micro_batch_size_per_gpu \
                and per_w % micro.micro_batch_size_per_gpu:
            sm = micro.micro_batch_size_per_gpu
            c.fail(f"demonstrations per worker {per_w} (= relift.sft_batch_size {sft_bs} / world size {W}) "
                   f"must divide by relift.sft_micro_batch_size_per_gpu ({sm}): {per_w} / {sm} = {per_w / sm:.4g}")
    buf = c.int("relift.buffer_size", min_value=1, allow_none=True)
    if enabled and buf is not None and sft_bs and buf < sft_bs:
        c.fail(f"relift.buffer_size ({buf}) must be >= relift.sft_batch_size ({sft_bs}) or the buffer never fills")
    return ReliftSpec(enable=enabled, max_acc=c.float("relift.max_acc", min_value=0.0, max_value=1.0),
                      sft_batch_size=sft_bs, sft_per_worker=per_w, buffer_size=buf, micro=micro,
                      entropy_coeff=c.float("relift.entropy_coeff"),
                      loss_agg_mode=c.choice("relift.loss_agg_mode", loss_agg_modes(), what="loss aggregation mode"),
                      lr=c.float("relift.lr", min_value=0.0, allow_none=True),
                      sft_optimizer=c.choice("relift.sft_optimizer", ("shared", "separate"), what="optimiser mode"),
                      buffer_order=c.choice("relift.buffer_order", ("fifo", "lifo"), what="buffer order"))
