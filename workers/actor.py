"""The numerical core of the actor: forward passes in micro-batches, log-probs, and the updates.

``DataParallelActor(module, optimizer, config)`` wraps one causal LM (a plain ``nn.Module`` or one
sharded by FSDP2's ``fully_shard``; this file needs neither Ray nor ``torch.distributed``) and does:

* ``compute_log_prob(data, calculate_entropy)`` -> ``(log_probs [B, R], entropys [B, R] | None)``
* ``update_policy(data)`` -> metrics: PPO/GRPO mini-batches x ``ppo_epochs`` with gradient
  accumulation over micro-batches (clipped or no-clip surrogate, entropy bonus, KL loss)
* ``update_sft(data)`` -> metrics: NLL on demonstration tokens with an optional entropy bonus
  (ReLIFT's fine-tuning step, the SFT baseline)
* ``update_pairs(data, loss_type)`` -> metrics: REDI / DPO / SimPO on (chosen, rejected) pairs, both
  sides in one forward pass
* ``compute_pair_log_probs(data)`` -> per-token log-probs of both sides (the DPO reference pass)

Where the rest lives: the settings in :mod:`workers.actor_config`; the one optimiser-step loop
the three updates share (micro-batch gradient accumulation, grad clipping, non-finite skip,
metrics) in :mod:`workers.optim_step`; each update's per-micro-batch loss in
:mod:`workers.actor_losses`; the row-layout helpers in :mod:`workers.actor_batches`.

Layout of a row (as the rollout writes it, see docs/data_keys.md): ``input_ids`` = left-padded
prompt of width P followed by the right-padded response of width R; the response tokens are
``responses`` and the logits that predict them are ``logits[:, P-1 : P+R-1]``. Logits are divided by
the temperature before the log-softmax, in chunks of ``logits_chunk_size`` tokens
(:mod:`relift.models.logits`), so no float32 [tokens, vocab] tensor of a whole micro-batch exists;
the prompt's logits are never materialised (``logits_to_keep``) when the model supports it.

Micro-batches: a fixed count of sequences (``ppo_micro_batch_size_per_gpu``) or, with
``use_dynamic_bsz``, the fewest groups that keep each micro-batch within a token budget
(``ppo_max_token_len_per_gpu``). With ``use_remove_padding`` both are runs of the rows ordered by
length, each prompt's samples side by side when ``share_prompt_prefix`` is on
(:func:`workers.actor_batches.micro_batch_groups`).
Each micro-batch is trimmed to its own widest prompt and response (padding columns shared by all
its rows are dropped) and the outputs are padded back to R.

Gradient accumulation: every micro-batch loss is normalised by the totals of its whole mini-batch
(:func:`relift.algorithms.losses.loss_normalizers`) and the micro-batch losses are summed, so the
accumulated gradient equals the full mini-batch's gradient in every ``loss_agg_mode``.

Optimiser step: grad-norm clipping at ``grad_clip``; a non-finite grad norm zeroes the gradients,
skips the step and is counted (``<prefix>/skipped_steps``). The LR scheduler is NOT stepped here: the
caller owns it, so ReLIFT's SFT step cannot advance the RL schedule by accident. One optimiser is
used for every update kind unless ``update_sft``/``update_pairs`` get an ``optimizer=`` (the worker
decides whether the SFT step shares the RL optimiser's state).

Data-parallel note: under FSDP each rank normalises by its own mini-batch totals and FSDP averages
the gradients over ranks; with equal per-rank sequence counts this is the global mean for the
``seq-mean-*`` modes and a mean of per-rank token-means for ``token-mean`` (verl's behaviour). A
worker that wants the exact global token-mean can pass ``meta_info["global_num_tokens"]`` (the
global token total divided by the world size, per mini-batch: see :meth:`_normalizers`). A
subclass can override :meth:`_normalizers` and :meth:`_micro_batches` (the FSDP worker does).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from relift.algorithms.losses import loss_normalizers
from relift.models.logits import logprobs_and_entropy
from relift.protocol import DataProto
from workers.actor_batches import (
    SEQ_KEYS,
    micro_batch_groups,
    pad_columns,
    pair_keys,
    pair_lengths,
    pair_side,
    require_keys,
    stack_sides,
    supports_logits_to_keep,
)
from workers.actor_config import ActorConfig
from workers.actor_losses import PAIR_LOSS_TYPES, pair_hyperparameters, pair_step_loss, ppo_step_loss, sft_step_loss
from workers.lean_forward import LeanLlamaPasses
from workers.optim_step import StepLoss, run_optimizer_steps
from workers.packed_forward import packed_log_probs
from workers.prompt_sharing import can_share_prompts, prompt_group_ids, shared_prompt_logits

__all__ = ["ActorConfig", "DataParallelActor", "PAIR_LOSS_TYPES"]

logger = logging.getLogger(__name__)


class DataParallelActor:
    """Log-probs and updates of one policy replica (or one FSDP shard of it).

    Args:
        module: a HF-style causal LM: ``module(input_ids=, attention_mask=, position_ids=,
            use_cache=False)`` returns an object with ``.logits``.
        optimizer: the optimiser over ``module``'s parameters; ``None`` for forward-only roles
            (reference policy).
        config: actor config (dict / DictConfig / :class:`ActorConfig`) with verl's key names.
        lr_scheduler: accepted for symmetry with the worker's constructor but never stepped here;
            the caller steps it after ``update_policy`` (and not after ``update_sft``).
    """

    def __init__(self, module: nn.Module, optimizer: torch.optim.Optimizer | None = None, config: Any = None,
                 lr_scheduler: Any = None) -> None:
        self.module = module
        self.optimizer = optimizer
        self.config = ActorConfig.from_any(config)
        self.lr_scheduler = lr_scheduler
        self._logits_to_keep = supports_logits_to_keep(module)
        self._warned_temperature = False
        self.sort_micro_batches = True  # use_remove_padding: micro-batches of similar-length rows
        self.share_prompts = False  # share_prompt_prefix: each distinct prompt of a micro-batch runs once
        self.pack_sequences = False  # real tokens of all rows as one packed row (workers.packed_forward)
        self.lean_forward = False  # lean_forward: Llama-shaped passes in plain tensor ops (workers.lean_forward)
        self._can_share = can_share_prompts(module)

    # ------------------------------------------------------------------------------ forward

    def _forward_micro_batch(self, batch: Mapping[str, torch.Tensor], temperature: float,
                             calculate_entropy: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Log-probs (and entropy) of ``responses`` for one micro-batch, shape [b, R] float32.

        Columns of padding shared by all rows (left of the longest prompt, right of the longest
        response) are dropped before the forward; positions past a row's response are 0.
        """
        input_ids = batch["input_ids"]
        attention_mask = batch["attention_mask"]
        position_ids = batch["position_ids"]
        responses = batch["responses"]
        seq_len = input_ids.shape[1]
        resp_len = responses.shape[1]
        prompt_len = seq_len - resp_len
        if prompt_len < 1:
            raise ValueError(f"input_ids width {seq_len} must exceed the response width {resp_len} "
                             "(at least one prompt token predicts the first response token)")
        # trim shared padding: left of the earliest real prompt token, right of the longest response
        prompt_cols = attention_mask[:, :prompt_len].any(dim=0).nonzero()
        left = int(prompt_cols[0]) if prompt_cols.numel() else 0
        left = min(left, prompt_len - 1)
        resp_cols = attention_mask[:, prompt_len:].any(dim=0).nonzero()
        keep_r = int(resp_cols[-1]) + 1 if resp_cols.numel() else 1
        end = prompt_len + keep_r
        trimmed = (input_ids[:, left:end], attention_mask[:, left:end], position_ids[..., left:end])
        if self.pack_sequences and self._logits_to_keep and position_ids.dim() == 2:
            log_probs, entropy = packed_log_probs(
                self.module, *trimmed, prompt_len - left, responses[:, :keep_r], temperature=temperature,
                chunk_size=self.config.logits_chunk_size, with_entropy=calculate_entropy)
        else:
            log_probs, entropy = logprobs_and_entropy(self._response_logits(*trimmed, prompt_len - left, keep_r),
                                                      responses[:, :keep_r], temperature=temperature,
                                                      chunk_size=self.config.logits_chunk_size,
                                                      with_entropy=calculate_entropy)
        # zero past each row's response, so results do not depend on how rows were grouped
        valid = attention_mask[:, prompt_len:end].to(log_probs.dtype)
        pad = resp_len - keep_r
        log_probs = pad_columns(log_probs * valid, 0, pad)
        if entropy is not None:
            entropy = pad_columns(entropy * valid, 0, pad)
        return log_probs, entropy

    def _response_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                         prompt_len: int, keep_r: int) -> torch.Tensor:
        """Logits [b, keep_r, V] predicting the first ``keep_r`` response tokens of trimmed rows: each
        distinct prompt run once when prompts are shared, else one plain forward."""
        if self.share_prompts and self._can_share and position_ids.dim() == 2:
            logits = shared_prompt_logits(self.module, input_ids, attention_mask, position_ids, prompt_len, keep_r,
                                          lean=self.lean_forward)
            if logits is not None:
                return logits
        if self.lean_forward and position_ids.dim() == 2:
            return LeanLlamaPasses(self.module).full(input_ids, attention_mask, position_ids, keep_r + 1)[:, :-1]
        kwargs: dict[str, Any] = {"use_cache": False}
        if self._logits_to_keep:
            kwargs["logits_to_keep"] = keep_r + 1
        out = self.module(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, **kwargs)
        logits = out.logits if hasattr(out, "logits") else out[0]
        # the last keep_r + 1 positions are P'-1 .. P'+keep_r-1; drop the final one (it predicts past R)
        return logits[:, -(keep_r + 1):-1]

    def _micro_batches(self, data: DataProto, use_dynamic: bool, micro_batch_size: int | None,
                       max_token_len: int | None, lengths: torch.Tensor | None = None
                       ) -> tuple[list[DataProto], list[list[int]]]:
        """Split rows into micro-batches; returns the parts and each part's row indices."""
        prompt_groups = None
        keys = data.batch.keys()
        if self.share_prompts and self._can_share and self.sort_micro_batches and "responses" in keys:
            # the prompt columns of input_ids (the update's batch carries no separate "prompts" key)
            width = data.batch["input_ids"].shape[1] - data.batch["responses"].shape[1]
            prompt_groups = prompt_group_ids(data.batch["input_ids"][:, :width], data.batch["attention_mask"])
        groups = micro_batch_groups(data, use_dynamic, micro_batch_size, max_token_len, lengths,
                                    sort_by_length=self.sort_micro_batches, prompt_groups=prompt_groups)
        return [data[g] for g in groups], groups

    def _temperature(self, data: DataProto) -> float:
        temperature = data.meta_info.get("temperature")
        if temperature is None:
            if not self._warned_temperature:
                logger.warning("meta_info has no 'temperature'; log-probs use 1.0. Pass the rollout "
                               "temperature so the actor scores the distribution that was sampled.")
                self._warned_temperature = True
            return 1.0
        temperature = float(temperature)
        if temperature <= 0:  # greedy rollouts are scored at temperature 1
            return 1.0
        return temperature

    @torch.no_grad()
    def compute_log_prob(self, data: DataProto, calculate_entropy: bool = False
                         ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-token log-probs (and entropies) of ``responses`` at ``meta_info['temperature']``.

        Micro-batching: ``meta_info`` keys ``micro_batch_size`` / ``use_dynamic_bsz`` /
        ``max_token_len`` override the config's ``log_prob_*`` keys, which fall back to ``ppo_*``.
        Returns float32 tensors [B, R] in the input's row order (0 past each response).
        """
        require_keys(data, SEQ_KEYS, "compute_log_prob")
        cfg = self.config
        meta = data.meta_info
        use_dynamic = meta.get("use_dynamic_bsz", cfg.log_prob_use_dynamic_bsz)
        if use_dynamic is None:
            use_dynamic = cfg.use_dynamic_bsz
        micro_bs = meta.get("micro_batch_size", cfg.log_prob_micro_batch_size_per_gpu) or \
            cfg.ppo_micro_batch_size_per_gpu or len(data)
        max_tokens = meta.get("max_token_len", cfg.log_prob_max_token_len_per_gpu) or cfg.ppo_max_token_len_per_gpu
        temperature = self._temperature(data)
        batch = data.select(batch_keys=list(SEQ_KEYS))
        parts, groups = self._micro_batches(batch, bool(use_dynamic), micro_bs, max_tokens)
        was_training = self.module.training
        self.module.eval()
        try:
            n, resp_len = data.batch["responses"].shape
            device = data.batch["responses"].device
            log_probs = torch.zeros(n, resp_len, dtype=torch.float32, device=device)
            entropys = torch.zeros(n, resp_len, dtype=torch.float32, device=device) if calculate_entropy else None
            for part, idx in zip(parts, groups, strict=True):
                lp, ent = self._forward_micro_batch(part.batch, temperature, calculate_entropy)
                index = torch.as_tensor(idx, device=device)
                log_probs[index] = lp.to(device)
                if entropys is not None:
                    entropys[index] = ent.to(device)
        finally:
            self.module.train(was_training)
        return log_probs, entropys

    # ------------------------------------------------------------------------------ optimiser

    def _get_optimizer(self, optimizer: torch.optim.Optimizer | None, what: str) -> torch.optim.Optimizer:
        optimizer = optimizer or self.optimizer
        if optimizer is None:
            raise RuntimeError(f"{what} needs an optimizer; this actor was built without one (forward-only role)")
        return optimizer

    @staticmethod
    def _normalizers(mini: DataProto, mask: torch.Tensor) -> dict[str, Any]:
        """agg_loss normalisers of one mini-batch: its own totals unless meta_info gives global ones."""
        norms: dict[str, Any] = loss_normalizers(mask)
        meta = mini.meta_info
        if meta.get("global_num_tokens") is not None:
            norms["num_tokens"] = meta["global_num_tokens"]
        if meta.get("global_num_seqs") is not None:
            norms["num_seqs"] = meta["global_num_seqs"]
        return norms

    def _split_mini_batches(self, data: DataProto, mini_batch_size: int, epoch: int) -> list[DataProto]:
        if self.config.shuffle:
            gen = torch.Generator().manual_seed(self.config.seed + 1000003 * epoch +
                                                int(data.meta_info.get("global_step", 0)))
            data = data[torch.randperm(len(data), generator=gen)]
        return data.split(mini_batch_size)

    def _optimise(self, optimizer: torch.optim.Optimizer, minis: Iterable[DataProto], step_loss: StepLoss,
                  prefix: str, *, pairs: bool = False, lr: float | None = None,
                  scalars: dict[str, float] | None = None) -> dict[str, Any]:
        """The shared optimiser-step loop over ``minis``, micro-batched by the ``ppo_*`` settings
        (pair rows are budgeted by the tokens of both sides)."""
        def split(mini: DataProto) -> list[DataProto]:
            lengths = pair_lengths(mini) if pairs else None
            return self._micro_batches(mini, *self.config.train_micro_batching(), lengths=lengths)[0]

        return run_optimizer_steps(self.module, optimizer, minis, split, step_loss, prefix=prefix,
                                   grad_clip=self.config.grad_clip, lr=lr, scalars=scalars)

    # ------------------------------------------------------------------------------ updates

    def update_policy(self, data: DataProto) -> dict[str, Any]:
        """PPO-style update over ``ppo_epochs`` x mini-batches; returns verl-named metrics.

        Needs ``input_ids, attention_mask, position_ids, responses, response_mask, old_log_probs,
        advantages`` (+ ``ref_log_prob`` with ``use_kl_loss``). Without ``old_log_probs`` the update
        must be exactly on-policy (``ppo_epochs == 1`` and one mini-batch): the old log-probs are
        then the current ones, detached, which is what the skipped ``compute_log_prob`` would return.
        Per optimiser step it records ``actor/pg_loss``, ``actor/pg_clipfrac``, ``actor/ppo_kl``,
        ``actor/pg_clipfrac_lower``, ``actor/grad_norm``, ``actor/lr`` (+ ``actor/entropy`` with an
        entropy bonus, ``actor/kl_loss`` with the KL loss); ``actor/kl_coef`` and
        ``actor/skipped_steps`` are scalars.
        """
        cfg = self.config
        optimizer = self._get_optimizer(None, "update_policy")
        on_policy = "old_log_probs" not in data.batch.keys()
        if on_policy and not (cfg.ppo_epochs == 1 and len(data) <= cfg.ppo_mini_batch_size):
            raise KeyError(f"update_policy needs 'old_log_probs' unless the update is exactly on-policy (one epoch, "
                           f"one mini-batch): ppo_epochs={cfg.ppo_epochs}, rows={len(data)}, "
                           f"ppo_mini_batch_size={cfg.ppo_mini_batch_size}")
        keys = list(SEQ_KEYS) + ["advantages"] + ([] if on_policy else ["old_log_probs"])
        if cfg.use_kl_loss:
            keys.append("ref_log_prob")
        require_keys(data, keys, "update_policy")
        if "response_mask" in data.batch.keys():
            keys.append("response_mask")
        temperature = self._temperature(data)
        batch = data.select(batch_keys=keys)

        def minis() -> Iterator[DataProto]:
            for epoch in range(cfg.ppo_epochs):
                yield from self._split_mini_batches(batch, cfg.ppo_mini_batch_size, epoch)

        step_loss = ppo_step_loss(cfg, self._forward_micro_batch, self._normalizers, temperature, on_policy)
        return self._optimise(optimizer, minis(), step_loss, "actor",
                              scalars={"actor/kl_coef": cfg.kl_loss_coef if cfg.use_kl_loss else 0.0})

    def update_sft(self, data: DataProto, entropy_coeff: float | None = None, *,
                   optimizer: torch.optim.Optimizer | None = None, lr: float | None = None,
                   mini_batch_size: int | None = None) -> dict[str, Any]:
        """Fine-tune on demonstrations: NLL on ``response_mask`` tokens minus an entropy bonus.

        Rows use the rollout layout: prompt (left-padded) + demonstration as ``responses``, with
        ``response_mask`` marking the tokens to learn (e.g. built from ``tgt_input_ids`` /
        ``tgt_attention_mask``). Log-probs at temperature 1. One optimiser step per mini-batch of
        ``mini_batch_size`` rows (argument, else ``meta_info['mini_batch_size']``, else config
        ``sft_mini_batch_size``, else the whole batch). ``lr`` temporarily overrides the optimiser's
        learning rate for these steps; ``optimizer`` uses a separate optimiser. Metrics: ``sft/loss``
        (the NLL), ``sft/entropy``, ``sft/grad_norm``, ``sft/lr``, ``sft/num_tokens``,
        ``sft/skipped_steps``.
        """
        cfg = self.config
        optimizer = self._get_optimizer(optimizer, "update_sft")
        coeff = cfg.sft_entropy_coeff if entropy_coeff is None else float(entropy_coeff)
        require_keys(data, list(SEQ_KEYS), "update_sft")
        keys = list(SEQ_KEYS) + (["response_mask"] if "response_mask" in data.batch.keys() else [])
        batch = data.select(batch_keys=keys)
        mbs = mini_batch_size or data.meta_info.get("mini_batch_size") or cfg.sft_mini_batch_size or len(data)
        step_loss = sft_step_loss(cfg, self._forward_micro_batch, self._normalizers, coeff)
        return self._optimise(optimizer, batch.split(int(mbs)), step_loss, "sft", lr=lr)

    # ------------------------------------------------------------------------------ pairs

    def _pair_forward(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token log-probs of chosen [b, Rc] and rejected [b, Rr] from ONE forward pass."""
        chosen, rejected = pair_side(batch, "chosen"), pair_side(batch, "rejected")
        stacked = stack_sides(chosen, rejected)
        log_prob, _ = self._forward_micro_batch(stacked, 1.0, False)
        b = chosen["input_ids"].shape[0]
        r_c, r_r = chosen["responses"].shape[1], rejected["responses"].shape[1]
        return log_prob[:b, :r_c], log_prob[b:, :r_r]

    @torch.no_grad()
    def compute_pair_log_probs(self, data: DataProto) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token log-probs of both sides (temperature 1), e.g. the reference pass for DPO.

        Store them as ``ref_chosen_log_prob`` / ``ref_rejected_log_prob`` for :meth:`update_pairs`.
        """
        batch = data.select(batch_keys=pair_keys(data))
        cfg = self.config
        micro_bs = data.meta_info.get("micro_batch_size") or cfg.log_prob_micro_batch_size_per_gpu or \
            cfg.ppo_micro_batch_size_per_gpu or len(data)
        use_dynamic = data.meta_info.get("use_dynamic_bsz", cfg.use_dynamic_bsz)
        max_tokens = data.meta_info.get("max_token_len") or cfg.ppo_max_token_len_per_gpu
        parts, groups = self._micro_batches(batch, bool(use_dynamic), micro_bs, max_tokens,
                                            lengths=pair_lengths(batch))
        n = len(data)
        r_c, r_r = data.batch["chosen_responses"].shape[1], data.batch["rejected_responses"].shape[1]
        device = data.batch["chosen_responses"].device
        chosen = torch.zeros(n, r_c, dtype=torch.float32, device=device)
        rejected = torch.zeros(n, r_r, dtype=torch.float32, device=device)
        was_training = self.module.training
        self.module.eval()
        try:
            for part, idx in zip(parts, groups, strict=True):
                c, r = self._pair_forward(part.batch)
                index = torch.as_tensor(idx, device=device)
                chosen[index], rejected[index] = c.to(device), r.to(device)
        finally:
            self.module.train(was_training)
        return chosen, rejected

    def update_pairs(self, data: DataProto, loss_type: str, *, alpha: float | None = None,
                     beta: float | None = None, gamma: float | None = None,
                     optimizer: torch.optim.Optimizer | None = None, lr: float | None = None,
                     mini_batch_size: int | None = None) -> dict[str, Any]:
        """One optimiser step per mini-batch of (prompt, chosen, rejected) pairs.

        Columns, for ``side`` in chosen/rejected: ``{side}_input_ids``, ``{side}_attention_mask``,
        ``{side}_position_ids``, ``{side}_responses`` (+ optional ``{side}_response_mask``), in the
        rollout layout. DPO also needs ``ref_chosen_log_prob`` / ``ref_rejected_log_prob``: per-token
        [B, R_side] (see :meth:`compute_pair_log_probs`) or per-sequence sums [B].
        ``loss_type``: ``redi`` (alpha, default config ``redi_alpha``), ``dpo`` (beta, ``dpo_beta``),
        ``simpo`` (beta, gamma: ``simpo_beta``, ``simpo_gamma``). Metrics are prefixed with the loss
        type: ``<type>/loss``, the loss function's own metrics (``<type>/logps/chosen``, ...),
        ``<type>/grad_norm``, ``<type>/lr``, ``<type>/skipped_steps``.
        """
        cfg = self.config
        hyperparameters = pair_hyperparameters(cfg, loss_type, alpha, beta, gamma)  # raises on a bad loss_type
        optimizer = self._get_optimizer(optimizer, "update_pairs")
        extra = ("ref_chosen_log_prob", "ref_rejected_log_prob") if loss_type == "dpo" else ()
        batch = data.select(batch_keys=pair_keys(data, extra))
        mbs = mini_batch_size or data.meta_info.get("mini_batch_size") or cfg.pair_mini_batch_size or len(data)
        step_loss = pair_step_loss(loss_type, hyperparameters, self._pair_forward)
        return self._optimise(optimizer, batch.split(int(mbs)), step_loss, loss_type, pairs=True, lr=lr)
