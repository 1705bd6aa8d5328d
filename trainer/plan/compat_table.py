"""The verl / ReLIFT key table: every key their published scripts set, and what relift does with it.

Data only; :mod:`trainer.plan.compat` applies it to a command line and ``docs/porting.md`` is
generated from it (``python -m trainer.plan.compat --markdown``). Sources of the keys:

- verl's trainer config ``verl/trainer/config/ppo_trainer.yaml`` (volcengine/verl) and its example
  scripts ``examples/grpo_trainer/run_qwen2-7b*.sh``, ``run_qwen2_5-7b_math.sh``, ``run_qwen3-1.7b.sh``,
  ``examples/reinforce_plus_plus_trainer/*.sh``, ``examples/rloo_trainer/run_qwen2-7b.sh``;
- the ReLIFT paper's scripts (TheRoadQaQ/ReLIFT ``examples/math-1.5b/train.sh``,
  ``examples/math-7b/train.sh``, ``exp_scripts/qwen-math-7b/train_two_node.sh``) and the config of its
  verl fork (``relift/verl/verl/relift/config/relift_trainer.yaml``), whose SFT step is
  ``ReLIFTDataParallelPPOActor.sft_update_policy`` (one AdamW step per ``sft_mini_batch_size``
  demonstrations, ``sft_epochs`` passes, clipped at ``sft.grad_clip``, loss ``v0`` = token-mean NLL).

Row fields (see :class:`Rule`): ``status`` is ``same`` (already a relift key with that meaning),
``alias`` (renamed to ``relift`` before Hydra composes, with a one-line notice), ``ignored``
(accepted with a notice because it changes speed or memory, not results) or ``rejected``. Values
matter: ``harmless`` lists the values an ``ignored`` key may take (any other value is rejected with
``instead``); ``values`` maps an alias's values (a value not in the map is rejected); ``requires``
names relift keys whose composed value must equal this key's value and ``checks`` the relift values
a given value needs (else rejected); ``per_gpu``
divides a global count by the world size; ``also`` are overrides the key implies, placed first so
the user's own explicit keys win (``{positive}`` is ``true`` when the value is > 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Rule", "RULES", "ANY"]

ANY: tuple[Any, ...] = ()  # harmless=ANY: every value is a no-op

AR = "actor_rollout_ref"
A, RO, REF, M = f"{AR}.actor", f"{AR}.rollout", f"{AR}.ref", f"{AR}.model"
RELIFT_ON = ("relift.enable=true",)
_NO_CRITIC = "relift has no critic or value model (GRPO-family estimators only)"


@dataclass(frozen=True)
class Rule:
    key: str  # may hold * (fnmatch): "x.*" matches every key below x
    status: str  # same | alias | ignored | rejected
    note: str
    source: str = "verl"  # verl | verl (old) | ReLIFT fork
    relift: str | None = None  # alias target (a trailing ".*" renames the prefix)
    instead: str = ""  # what to use when the value is rejected
    harmless: tuple[Any, ...] | None = None  # ignored: the accepted values (ANY = all)
    values: dict[Any, Any] | None = None  # alias: value -> relift value
    requires: tuple[str, ...] = ()  # relift keys whose value must equal this key's value
    per_gpu: str | None = None  # alias: the use_dynamic_bsz key that makes the count unused
    also: tuple[str, ...] = field(default=())
    checks: dict[Any, tuple[tuple[str, Any], ...]] | None = None  # value -> (relift key, required value) pairs


def _same(key: str, note: str = "same meaning", source: str = "verl") -> Rule:
    return Rule(key, "same", note, source)


def _noop(key: str, note: str, source: str = "verl", harmless: tuple[Any, ...] = ANY, instead: str = "") -> Rule:
    return Rule(key, "ignored", note, source, harmless=harmless, instead=instead)


RULES: tuple[Rule, ...] = (
    # ------------------------------------------------------------------ data
    _same("data.train_files"),
    _same("data.val_files"),
    _same("data.prompt_key"),
    _same("data.reward_fn_key"),
    _same("data.max_prompt_length"),
    _same("data.max_response_length"),
    _same("data.train_batch_size"),
    _same("data.val_batch_size", "prompts per validation batch (null = all)"),
    _same("data.filter_overlong_prompts", "true is the same as data.truncation=filter"),
    _same("data.truncation"),
    _same("data.shuffle"),
    _same("data.seed"),
    _same("data.dataloader_num_workers"),
    _same("data.return_raw_chat", "accepted; raw prompts are always kept"),
    _same("data.target_key", "the demonstration column of ReLIFT", "ReLIFT fork"),
    _same("data.max_target_length", "demonstration tokens (ReLIFT)", "ReLIFT fork"),
    Rule("data.max_target_len", "alias", "the old fork's name", "ReLIFT fork", relift="data.max_target_length"),
    Rule(
        "data.reward_impl_version",
        "alias",
        "ReLIFT's grader version 3 (both think tags required, the answer "
        "read after the first closing tag) is relift/rewards/math_v3.py",
        "ReLIFT fork",
        relift="reward.custom_reward_function.path",
        values={3: "{repo}/relift/rewards/math_v3.py"},
        also=("reward.custom_reward_function.name=compute_score",),
        instead="only version 3 is ported; for another grader set reward.custom_reward_function.path",
    ),
    _noop(
        "data.tokenizer",
        "the tokenizer comes from actor_rollout_ref.model.tokenizer_path",
        harmless=(None,),
        instead=f"{M}.tokenizer_path",
    ),
    _noop("data.return_raw_input_ids", "only used with a model-based reward, which relift does not have"),
    _noop("data.filter_overlong_prompts_workers", "speed only: filtering runs in the planner's process"),
    _noop("data.image_key", "relift trains text-only models"),
    _noop("data.video_key", "relift trains text-only models"),
    _noop(
        "data.custom_cls.*",
        "relift reads parquet rows itself",
        harmless=(None,),
        instead="convert the data to relift's parquet layout (docs/data_keys.md)",
    ),
    # ------------------------------------------------------------------ model
    _same(f"{M}.path"),
    _same(f"{M}.tokenizer_path"),
    _same(f"{M}.trust_remote_code"),
    _same(f"{M}.enable_gradient_checkpointing"),
    _same(f"{M}.override_config"),
    _same(
        f"{M}.use_remove_padding",
        "same purpose, another method: micro-batches of similar-length rows trimmed to their longest "
        "(no flash-attn varlen packing); same losses up to rounding (docs/performance.md)",
    ),
    _noop(
        f"{M}.use_liger",
        f"no Liger kernels; for Llama/Qwen2, {M}.lean_activations=true swaps in an RMSNorm and a SwiGLU that keep "
        "as few tensors for the backward as Liger's, in plain PyTorch",
    ),
    _noop(
        f"{M}.use_fused_kernels",
        f"speed only: relift computes log-probs from logits in chunks ({A}.logits_chunk_size); for Llama/Qwen2 on one "
        f"unsharded rank, {M}.lean_forward (on by default) runs the actor's passes in plain tensor ops",
    ),
    _noop(f"{M}.fused_kernel_options.*", "speed only (see use_fused_kernels)"),
    _noop(
        f"{M}.external_lib",
        "models load with transformers (trust_remote_code for custom code)",
        harmless=(None,),
        instead=f"{M}.trust_remote_code=true",
    ),
    _noop(
        f"{AR}.hybrid_engine",
        "relift always colocates actor and rollout",
        harmless=(True,),
        instead="the actor and the rollout engine share the workers; there is no separate mode",
    ),
    # ------------------------------------------------------------------ actor
    _same(f"{A}.strategy", "fsdp2 is what relift uses"),
    _same(f"{A}.ppo_mini_batch_size"),
    _same(f"{A}.ppo_micro_batch_size_per_gpu"),
    _same(f"{A}.use_dynamic_bsz"),
    _same(f"{A}.ppo_max_token_len_per_gpu"),
    _same(f"{A}.ppo_epochs"),
    _same(f"{A}.shuffle"),
    _same(f"{A}.grad_clip"),
    _same(f"{A}.clip_ratio"),
    _same(f"{A}.clip_ratio_low"),
    _same(f"{A}.clip_ratio_high"),
    _same(f"{A}.clip_ratio_c"),
    _same(f"{A}.loss_agg_mode"),
    _same(f"{A}.entropy_coeff"),
    _same(f"{A}.use_kl_loss"),
    _same(f"{A}.kl_loss_coef"),
    _same(f"{A}.kl_loss_type"),
    _same(f"{A}.optim.lr"),
    _same(f"{A}.optim.lr_warmup_steps"),
    _same(f"{A}.optim.lr_warmup_steps_ratio"),
    _same(f"{A}.optim.min_lr_ratio"),
    _same(f"{A}.optim.weight_decay"),
    _same(f"{A}.fsdp_config.param_offload"),
    _same(f"{A}.fsdp_config.optimizer_offload"),
    _same(f"{A}.fsdp_config.fsdp_size"),
    _same(f"{A}.fsdp_config.reshard_after_forward"),
    _same(f"{A}.loss_remove_clip", "no PPO clip: -A x ratio (LUFFY / ReLIFT)", "ReLIFT fork"),
    Rule(
        f"{A}.ppo_micro_batch_size",
        "alias",
        "verl's deprecated global count, divided by the world size "
        "(trainer.nnodes x trainer.n_gpus_per_node) as verl does",
        "verl (old)",
        relift=f"{A}.ppo_micro_batch_size_per_gpu",
        per_gpu=f"{A}.use_dynamic_bsz",
    ),
    Rule(
        f"{A}.optim.warmup_style",
        "alias",
        "constant | cosine (relift also has linear)",
        relift=f"{A}.optim.lr_scheduler_type",
    ),
    _noop(f"{A}.optim.total_training_steps", "derived from trainer.total_training_steps"),
    Rule(f"{A}.checkpoint.contents", "alias", "verl's older name", relift=f"{A}.checkpoint.save_contents"),
    _noop(f"{A}.use_torch_compile", "speed only"),
    _noop(f"{A}.entropy_from_logits_with_chunking", "speed only: relift always chunks the logits"),
    _noop(f"{A}.entropy_checkpointing", "memory only"),
    _noop(
        f"{M}.lora_rank",
        "0 means full fine-tuning",
        harmless=(0,),
        instead="full fine-tuning only (LoRA is not implemented): drop the LoRA keys",
    ),
    _noop(f"{M}.lora_alpha", "only used with lora_rank > 0"),
    _noop(f"{M}.target_modules", "only used with lora_rank > 0"),
    _noop(
        f"{A}.ulysses_sequence_parallel_size",
        "1 means no sequence parallelism",
        harmless=(1,),
        instead=f"relift has no sequence parallelism; fit long sequences with {A}.use_dynamic_bsz=true and "
        f"{A}.ppo_max_token_len_per_gpu, or gradient checkpointing",
    ),
    _noop(
        f"{A}.fsdp_config.grad_offload",
        f"memory only: gradients live with the parameters ({A}.fsdp_config.param_offload)",
        "verl (old)",
    ),
    _noop(f"{A}.fsdp_config.offload_policy", "memory only: use param_offload / optimizer_offload"),
    _noop(f"{A}.fsdp_config.wrap_policy.*", "relift shards each decoder layer"),
    Rule(
        f"{A}.loss_remove_token_mean",
        "alias",
        "true: sum over tokens / max response length (Dr.GRPO); false: token mean",
        "ReLIFT fork",
        relift=f"{A}.loss_agg_mode",
        values={True: "seq-mean-token-sum-norm", False: "token-mean"},
    ),
    _noop(
        f"{A}.policy_loss.loss_mode",
        "vanilla is relift's PPO surrogate",
        harmless=("vanilla",),
        instead=f"vanilla (clipped) or {A}.loss_remove_clip=true; other policy losses are not implemented",
    ),
    # ------------------------------------------------------------------ ReLIFT's fine-tuning step
    Rule(
        f"{A}.sft.sft_data_size",
        "alias",
        "hardest questions collected before one fine-tuning step; implies relift.enable=true",
        "ReLIFT fork",
        relift="relift.sft_batch_size",
        also=RELIFT_ON,
    ),
    Rule(
        f"{A}.sft.sft_mini_batch_size",
        "ignored",
        "relift takes one optimiser step per relift.sft_batch_size demonstrations, so it must equal sft_data_size",
        "ReLIFT fork",
        requires=("relift.sft_batch_size",),
        instead="relift.sft_batch_size (one optimiser step per batch of demonstrations)",
        also=RELIFT_ON,
    ),
    Rule(
        f"{A}.sft.sft_micro_batch_size",
        "alias",
        "old global count, divided by the world size",
        "ReLIFT fork",
        relift="relift.sft_micro_batch_size_per_gpu",
        per_gpu="relift.use_dynamic_bsz",
        also=RELIFT_ON,
    ),
    Rule(
        f"{A}.sft.sft_micro_batch_size_per_gpu",
        "alias",
        "demonstrations per forward/backward on one worker",
        "ReLIFT fork",
        relift="relift.sft_micro_batch_size_per_gpu",
        also=RELIFT_ON,
    ),
    Rule(
        f"{A}.sft.entropy_coeff",
        "alias",
        "entropy bonus of the fine-tuning step",
        "ReLIFT fork",
        relift="relift.entropy_coeff",
        also=RELIFT_ON,
    ),
    _noop(
        f"{A}.sft.sft_epochs",
        "relift makes one pass over each batch of demonstrations",
        "ReLIFT fork",
        harmless=(1,),
        instead="relift.sft_batch_size (one pass per batch; more epochs are not implemented)",
    ),
    _noop(
        f"{A}.sft.sft_loss_type",
        "v0 is token-mean NLL, relift's fine-tuning loss",
        "ReLIFT fork",
        harmless=("v0",),
        instead="v0 (the only loss of the fork)",
    ),
    Rule(
        f"{A}.sft.grad_clip",
        "ignored",
        "relift clips the fine-tuning step at the actor's grad_clip",
        "ReLIFT fork",
        requires=(f"{A}.grad_clip",),
        instead=f"{A}.grad_clip (shared by the RL and the fine-tuning steps)",
    ),
    Rule(
        f"{A}.sft.sft_grad_clip",
        "ignored",
        "relift clips the fine-tuning step at the actor's grad_clip",
        "ReLIFT fork",
        requires=(f"{A}.grad_clip",),
        instead=f"{A}.grad_clip",
    ),
    Rule(
        f"{A}.optim.sft.lr",
        "alias",
        "learning rate of the fine-tuning step, which the fork gives its own AdamW",
        "ReLIFT fork",
        relift="relift.lr",
        also=(*RELIFT_ON, "relift.sft_optimizer=separate"),
    ),
    Rule(
        f"{A}.optim.sft.same_or_not",
        "alias",
        "false: a second AdamW for the fine-tuning step (the paper)",
        "ReLIFT fork",
        relift="relift.sft_optimizer",
        values={False: "separate", True: "shared"},
    ),
    _noop(f"{A}.fsdp_config.sft_param_offload", "memory only: the actor's fsdp_config applies", "ReLIFT fork"),
    _noop(f"{A}.fsdp_config.sft_grad_offload", "memory only: the actor's fsdp_config applies", "ReLIFT fork"),
    _noop(
        f"{A}.fsdp_config.sft_optimizer_offload",
        f"memory only: the separate fine-tuning AdamW is offloaded with {A}.fsdp_config.optimizer_offload",
        "ReLIFT fork",
    ),
    _noop(
        f"{A}.fsdp_config.sft_use_lora",
        "full fine-tuning",
        "ReLIFT fork",
        harmless=(False,),
        instead="full fine-tuning only (LoRA is not implemented)",
    ),
    # ------------------------------------------------------------------ reference model
    _same(f"{REF}.log_prob_micro_batch_size_per_gpu"),
    _same(f"{REF}.log_prob_use_dynamic_bsz"),
    _same(f"{REF}.log_prob_max_token_len_per_gpu"),
    _same(f"{REF}.fsdp_config.param_offload"),
    _same(f"{REF}.fsdp_config.reshard_after_forward"),
    Rule(
        f"{REF}.log_prob_micro_batch_size",
        "alias",
        "deprecated global count, divided by the world size",
        "verl (old)",
        relift=f"{REF}.log_prob_micro_batch_size_per_gpu",
        per_gpu=f"{REF}.log_prob_use_dynamic_bsz",
    ),
    _noop(
        f"{REF}.ulysses_sequence_parallel_size",
        "1 means no sequence parallelism",
        harmless=(1,),
        instead="relift has no sequence parallelism",
    ),
    _noop(f"{REF}.strategy", "relift uses FSDP2"),
    _noop(f"{REF}.use_torch_compile", "speed only"),
    _noop(f"{REF}.fsdp_config.wrap_policy.*", "relift shards each decoder layer"),
    Rule(
        f"{REF}.use_ref",
        "ignored",
        "relift builds the reference model exactly when a KL term is on; false needs both KL terms off",
        "ReLIFT fork",
        instead=f"{A}.use_kl_loss=false algorithm.use_kl_in_reward=false",
        checks={False: ((f"{A}.use_kl_loss", False), ("algorithm.use_kl_in_reward", False))},
    ),
    # ------------------------------------------------------------------ rollout
    _same(f"{RO}.name", "hf | vllm (sglang is not supported)"),
    _same(f"{RO}.temperature"),
    _same(f"{RO}.top_p"),
    _same(f"{RO}.top_k"),
    _same(f"{RO}.n"),
    _same(f"{RO}.do_sample"),
    _same(f"{RO}.prompt_length"),
    _same(f"{RO}.response_length"),
    _same(f"{RO}.gpu_memory_utilization"),
    _same(f"{RO}.tensor_model_parallel_size"),
    _same(f"{RO}.enforce_eager"),
    _same(f"{RO}.free_cache_engine"),
    _same(f"{RO}.max_num_batched_tokens"),
    _same(f"{RO}.log_prob_micro_batch_size_per_gpu"),
    _same(f"{RO}.log_prob_use_dynamic_bsz"),
    _same(f"{RO}.log_prob_max_token_len_per_gpu"),
    _same(f"{RO}.calculate_log_probs"),
    _same(f"{RO}.val_kwargs.n"),
    _same(f"{RO}.val_kwargs.temperature"),
    _same(f"{RO}.val_kwargs.top_p"),
    _same(f"{RO}.val_kwargs.top_k"),
    _same(f"{RO}.val_kwargs.do_sample"),
    Rule(
        f"{RO}.log_prob_micro_batch_size",
        "alias",
        "deprecated global count, divided by the world size",
        "verl (old)",
        relift=f"{RO}.log_prob_micro_batch_size_per_gpu",
        per_gpu=f"{RO}.log_prob_use_dynamic_bsz",
    ),
    Rule(
        f"{RO}.val_temperature",
        "alias",
        "validation sampling temperature; > 0 also turns sampling on",
        "ReLIFT fork",
        relift=f"{RO}.val_kwargs.temperature",
        also=(f"{RO}.val_kwargs.do_sample={{positive}}",),
    ),
    Rule(f"{RO}.n_val", "alias", "samples per validation prompt", "ReLIFT fork", relift=f"{RO}.val_kwargs.n"),
    _noop(
        f"{RO}.mode",
        "sync is how relift generates",
        harmless=("sync",),
        instead=f"relift's rollout is synchronous (the hf or vllm engine inside each worker): drop {RO}.mode "
        "or set it to sync",
    ),
    _noop(
        f"{RO}.multi_turn.enable",
        "single-turn generation",
        harmless=(False,),
        instead="relift generates one response per prompt (no multi-turn or tool calls): drop the "
        f"{RO}.multi_turn.* keys",
    ),
    _noop(f"{RO}.multi_turn.*", "only used with multi_turn.enable=true"),
    _noop(f"{RO}.chat_scheduler", "async rollouts only", harmless=(None,), instead=f"drop it ({RO}.mode=sync)"),
    _noop(f"{RO}.agent.*", "agent loops are not implemented", harmless=ANY),
    _noop(f"{RO}.dtype", "the engine follows the actor's compute dtype (bf16 on GPU)"),
    _noop(f"{RO}.load_format", "relift loads the engine and syncs the actor's weights itself"),
    _noop(f"{RO}.max_model_len", "relift sizes the engine for data.max_prompt_length + data.max_response_length"),
    _noop(f"{RO}.max_num_seqs", "speed only (vLLM's default)"),
    _noop(f"{RO}.enable_chunked_prefill", "speed only (vLLM's default)"),
    _noop(f"{RO}.disable_log_stats", "vLLM logging only"),
    _noop(f"{RO}.engine_kwargs.*", "vLLM tuning knobs are not passed through"),
    _noop(f"{RO}.ignore_eos", "generation stops at EOS", harmless=(False,), instead="drop it (benchmarks only)"),
    _noop(f"{RO}.use_fire_sampling", "plain sampling", harmless=(False,), instead="drop it (not implemented)"),
    _noop(f"{RO}.max_prefix_len", "LUFFY's off-policy prefixes, off unless n_prefix > 0", "ReLIFT fork"),
    _noop(
        f"{RO}.n_prefix",
        "LUFFY's off-policy prefixes",
        "ReLIFT fork",
        harmless=(-1, 0),
        instead="LUFFY prefix rollouts are not implemented; relift.enable=true is ReLIFT's hook",
    ),
    _noop(f"{RO}.prefix_*", "LUFFY's off-policy prefixes", "ReLIFT fork"),
    # ------------------------------------------------------------------ reward
    Rule(
        "custom_reward_function.path",
        "alias",
        "function(data_source, solution_str, ground_truth, extra_info); an optional relift_warm_up() in the same "
        "file runs once before the scoring processes are forked (import heavy libraries there; "
        "relift/rewards/math_v3.py does)",
        relift="reward.custom_reward_function.path",
    ),
    Rule("custom_reward_function.name", "alias", "", relift="reward.custom_reward_function.name"),
    _noop(
        "custom_reward_function.overlong_buffer.enable",
        "no overlong penalty",
        "ReLIFT fork",
        harmless=(False,),
        instead="relift has no overlong-response penalty; write it into reward.custom_reward_function",
    ),
    _noop("custom_reward_function.overlong_buffer.*", "only used with overlong_buffer.enable=true", "ReLIFT fork"),
    _noop(
        "reward_model.reward_manager",
        "naive (one score per response) is how relift scores",
        harmless=("naive",),
        instead="naive; for DAPO's overlong penalty or batch scoring use reward.custom_reward_function",
    ),
    _noop(
        "reward_model.enable",
        "rule-based rewards only",
        harmless=(False,),
        instead="relift has no model-based reward: score with reward.custom_reward_function",
    ),
    _noop("reward_model.launch_reward_fn_async", "relift scores in a process pool (reward.num_workers)"),
    _noop("reward_model.*", "only used with a reward model, which relift does not have"),
    # ------------------------------------------------------------------ algorithm
    _same(
        "algorithm.adv_estimator",
        "grpo | reinforce_plus_plus | reinforce_plus_plus_baseline | rloo (gae needs a critic: not supported)",
    ),
    _same("algorithm.norm_adv_by_std_in_grpo"),
    _same("algorithm.gamma"),
    _same("algorithm.use_kl_in_reward"),
    _same("algorithm.kl_penalty"),
    _same("algorithm.kl_ctrl.type"),
    _same("algorithm.kl_ctrl.kl_coef"),
    _same("algorithm.kl_ctrl.horizon"),
    _same("algorithm.kl_ctrl.target_kl"),
    Rule(
        "algorithm.grpo_use_std",
        "alias",
        "false = Dr.GRPO (no std normalisation)",
        "ReLIFT fork",
        relift="algorithm.norm_adv_by_std_in_grpo",
    ),
    _noop("algorithm.lam", "GAE's lambda: " + _NO_CRITIC),
    _noop(
        "algorithm.filter_groups.enable",
        "no dynamic sampling",
        harmless=(False,),
        instead="DAPO's group filtering (dynamic sampling) is not implemented",
    ),
    _noop("algorithm.filter_groups.*", "only used with filter_groups.enable=true"),
    _noop("algorithm.use_pf_ppo", "plain PPO sampling", harmless=(False,), instead="PF-PPO is not implemented"),
    _noop("critic.*", _NO_CRITIC),
    # ------------------------------------------------------------------ trainer
    _same("trainer.project_name"),
    _same("trainer.experiment_name"),
    _same("trainer.logger", "console | jsonl | wandb | tensorboard"),
    _same("trainer.nnodes"),
    _same("trainer.n_gpus_per_node"),
    _same("trainer.total_epochs"),
    _same("trainer.total_training_steps"),
    _same("trainer.save_freq"),
    _same("trainer.test_freq"),
    _same("trainer.val_before_train"),
    _same("trainer.default_local_dir"),
    _same("trainer.resume_mode"),
    _same("trainer.resume_from_path"),
    _same("trainer.max_actor_ckpt_to_keep"),
    _same("trainer.balance_batch"),
    _same("trainer.val_only"),
    _same("ray_init.num_cpus"),
    Rule("ray_kwargs.ray_init.*", "alias", "newer verl's place for ray.init arguments", relift="ray_init.*"),
    _noop(
        "trainer.critic_warmup",
        "0 means no critic warm-up",
        harmless=(0,),
        instead=_NO_CRITIC + ": drop trainer.critic_warmup",
    ),
    _noop(
        "trainer.default_hdfs_dir",
        "checkpoints go to trainer.default_local_dir",
        harmless=(None,),
        instead="trainer.default_local_dir (copy it to HDFS yourself)",
    ),
    _noop(
        "trainer.del_local_ckpt_after_load",
        "local checkpoints are kept",
        harmless=(False,),
        instead="trainer.max_actor_ckpt_to_keep to bound disk use",
    ),
    _noop("trainer.max_critic_ckpt_to_keep", _NO_CRITIC),
    _noop(
        "trainer.max_optim_to_keep",
        "the fork kept optimiser states of the last N checkpoints; relift keeps "
        "whole checkpoints: bound them with trainer.max_actor_ckpt_to_keep",
        "ReLIFT fork",
    ),
    _noop("trainer.log_val_generations", "validation generations are not logged to the tracker"),
    _noop("trainer.rollout_data_dir", "rollouts are not dumped to files"),
    _noop("trainer.validation_data_dir", "validation generations are not dumped to files"),
    _noop("trainer.ray_wait_register_center_timeout", "relift's worker group has no register centre"),
    _noop("trainer.debug", "no debug mode", "ReLIFT fork"),
    _noop("trainer.use_legacy_worker_impl", "relift has one worker implementation"),
)
