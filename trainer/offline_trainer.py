"""The offline loop: SFT on demonstrations, or REDI / DPO / SimPO on preference pairs (``loss.type``).

Each step takes ``data.train_batch_size`` examples (pairs) from the resumable loader, puts them in
the actor's row layout and makes ONE optimiser step on the policy workers
(``update_actor_sft`` / ``update_actor_pairs``; the worker accumulates over micro-batches and steps
the LR schedule once). DPO first asks the colocated reference policy for its log-probs
(``compute_ref_log_prob`` on the pair columns).

Row layout: the datasets give right-padded ``prompt + completion + EOS`` sequences with a
``loss_mask`` on the completion. The actor wants ``input_ids`` = prompt part + ``responses``; with a
"prompt" of just the first token, ``responses = input_ids[:, 1:]`` and ``response_mask =
loss_mask[:, 1:]`` score exactly the completion tokens (the first token is never a completion token).

Validation (``data.val_files``, every ``trainer.test_freq`` steps, at the end, and before training
with ``trainer.val_before_train``): ``val/loss``, the same loss without any update (SFT: token-mean
NLL over the whole validation set; pairs: the pair loss averaged over pairs). Metrics go to the
trackers like the RL trainer's: ``train/loss``, ``train/lr``, ``train/grad_norm``, the worker's own
``sft/*`` or ``<loss>/*``, ``val/loss``, ``timing_s/*``, ``training/global_step``, ``training/epoch``.

Checkpoints / resume / metrics truncation work as in :mod:`trainer.rl_trainer`.
``trainer.export_hf: true`` writes the final policy as a Hugging Face folder to
``<trainer.default_local_dir>/hf`` (what the quickstart hands to the RL stage as
``actor_rollout_ref.model.path``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from relift.algorithms.losses import dpo_loss, redi_loss, simpo_loss
from relift.protocol import DataProto
from relift.spec import OfflineRunSpec
from relift.utils.timer import timed
from trainer.data_configs import offline_data_config
from trainer.rl_trainer import reduce_metrics
from trainer.step_loop import StepLoop

__all__ = ["OfflineTrainer", "run", "to_actor_layout", "to_pair_layout"]

logger = logging.getLogger(__name__)

def _side_layout(ids: torch.Tensor, attn: torch.Tensor, pos: torch.Tensor, loss_mask: torch.Tensor,
                 prefix: str = "") -> dict[str, torch.Tensor]:
    if ids.shape[1] < 2:
        raise ValueError(f"sequences must hold at least 2 tokens, got width {ids.shape[1]}")
    return {f"{prefix}input_ids": ids, f"{prefix}attention_mask": attn, f"{prefix}position_ids": pos,
            f"{prefix}responses": ids[:, 1:], f"{prefix}response_mask": (loss_mask[:, 1:] * attn[:, 1:]).long()}


def to_actor_layout(batch: DataProto) -> DataProto:
    """SFT items (``input_ids``, ``attention_mask``, ``position_ids``, ``loss_mask``) -> actor rows."""
    b = batch.batch
    tensors = _side_layout(b["input_ids"], b["attention_mask"], b["position_ids"], b["loss_mask"])
    return DataProto.from_dict(tensors=tensors, meta_info={"temperature": 1.0})


def to_pair_layout(batch: DataProto) -> DataProto:
    """Pair items (``chosen_*`` / ``rejected_*``) -> the actor's pair columns."""
    b = batch.batch
    tensors: dict[str, torch.Tensor] = {}
    for side in ("chosen", "rejected"):
        tensors.update(_side_layout(b[f"{side}_input_ids"], b[f"{side}_attention_mask"], b[f"{side}_position_ids"],
                                    b[f"{side}_loss_mask"], prefix=f"{side}_"))
    return DataProto.from_dict(tensors=tensors, meta_info={"temperature": 1.0})


def _side(pairs: DataProto, side: str) -> DataProto:
    keys = ("input_ids", "attention_mask", "position_ids", "responses", "response_mask")
    return DataProto.from_dict(tensors={k: pairs.batch[f"{side}_{k}"] for k in keys}, meta_info={"temperature": 1.0})


class OfflineTrainer(StepLoop):
    """Holds the offline loop's state; ``fit()`` (:class:`trainer.step_loop.StepLoop`) runs it."""

    console_keys = {"loss": "train/loss", "val_loss": "val/loss", "lr": "train/lr", "grad_norm": "train/grad_norm",
                    "step_s": "timing_s/step"}

    def __init__(self, spec: OfflineRunSpec) -> None:
        if not isinstance(spec, OfflineRunSpec):
            raise TypeError("OfflineTrainer takes the run spec from trainer.plan.build_offline_plan(cfg), "
                            f"got {type(spec).__name__}")
        super().__init__(spec)
        self.kind = spec.data.kind
        self.loss_type = spec.loss.type
        self.progress_name = f"{self.loss_type} steps"
        self.uses_ref = spec.ref.enabled
        # ref.precompute: the DPO reference from the untrained policy, computed once (trainer/dpo_ref_cache.py)
        self.ref_precompute = spec.ref.precompute
        self.ref_cache: Any = None
        self.batch_size = spec.data.train_batch_size
        if self.kind != "sft":  # chosen/rejected log-prob, margin, chosen > rejected on the console
            from trainer.pair_plotting import console_keys  # noqa: PLC0415

            self.console_keys = {**OfflineTrainer.console_keys, **console_keys(self.loss_type)}

    # ------------------------------------------------------------------ setup
    def _dataset(self, files: tuple[str, ...]) -> Any:
        from relift.data import PairDataset, SFTDataset  # noqa: PLC0415

        cls = SFTDataset if self.kind == "sft" else PairDataset
        return cls(list(files), self.tokenizer, config=offline_data_config(self.spec.data))

    def _build_data(self) -> None:
        from relift.models.loading import load_tokenizer  # noqa: PLC0415

        spec, data = self.spec, self.spec.data
        self.tokenizer = load_tokenizer(spec.model.tokenizer_path, trust_remote_code=spec.model.trust_remote_code)
        self.train_dataset = self._dataset(data.train_files)
        val_ds = self._dataset(data.val_files) if data.val_files else None
        self._make_loaders(self.train_dataset, val_ds, batch_size=self.batch_size, data=data,
                           val_batch_size=data.val_batch_size)
        logger.info("offline %s: %d train rows, %d steps per epoch, %d steps", self.loss_type,
                    len(self.train_dataset), len(self.train_loader), self.total_steps)

    def _build_workers(self) -> None:
        from trainer.workers_setup import build_worker_groups  # noqa: PLC0415

        self.groups = build_worker_groups(self.spec.worker(), self.spec.ray_init,
                                          with_ref=self.uses_ref and not self.ref_precompute, with_rollout=False)
        self.actor_wg = self.groups.actor

    # ------------------------------------------------------------------ steps
    def train_step(self, batch: DataProto) -> dict[str, Any]:
        """One optimiser step on one batch; returns its metrics."""
        timings: dict[str, float] = {}
        with timed("step", timings):
            if self.kind == "sft":
                data = to_actor_layout(batch)
                with timed("update_actor", timings):
                    out = self.actor_wg.update_actor_sft(data)
                prefix = "sft"
            else:
                data = to_pair_layout(batch)
                if self.ref_cache is not None:
                    data = self.ref_cache.attach(data, batch, "train")
                elif self.uses_ref:
                    with timed("ref", timings):
                        data = data.union(self.actor_wg.compute_ref_log_prob(data))
                data.meta_info["loss_type"] = self.loss_type
                with timed("update_actor", timings):
                    out = self.actor_wg.update_actor_pairs(data)
                prefix = self.loss_type
        metrics: dict[str, Any] = reduce_metrics(out.meta_info.get("metrics", {}))
        metrics.pop("timing_s/update_actor_worker", None)
        for name in ("loss", "lr", "grad_norm"):
            if f"{prefix}/{name}" in metrics:
                metrics[f"train/{name}"] = metrics[f"{prefix}/{name}"]
        metrics.update(timings)
        return metrics

    def _seq_log_probs(self, data: DataProto, ref: bool = False) -> torch.Tensor:
        if ref:
            return self.actor_wg.compute_ref_log_prob(data).batch["ref_log_prob"]
        return self.actor_wg.compute_log_prob(data).batch["old_log_probs"]

    def validate(self) -> dict[str, float]:
        """``val/loss`` over the validation set (no update); empty without validation files."""
        if not self.val_batches:
            return {}
        if self.kind == "sft":
            nll = tokens = 0.0
            for batch in self.val_batches:
                data = to_actor_layout(batch)
                logp = self._seq_log_probs(data)
                mask = data.batch["response_mask"].float()
                nll += float(-(logp * mask).sum())
                tokens += float(mask.sum())
            return {"val/loss": nll / max(tokens, 1.0)}
        total = pairs = 0.0
        for batch in self.val_batches:
            data = to_pair_layout(batch)
            sides = {s: _side(data, s) for s in ("chosen", "rejected")}
            lp = {s: self._seq_log_probs(d) for s, d in sides.items()}
            mask = {s: d.batch["response_mask"].float() for s, d in sides.items()}
            if self.loss_type == "redi":
                loss, _ = redi_loss(lp["chosen"], mask["chosen"], lp["rejected"], mask["rejected"],
                                    alpha=self.spec.loss.alpha)
            elif self.loss_type == "simpo":
                loss, _ = simpo_loss(lp["chosen"], mask["chosen"], lp["rejected"], mask["rejected"],
                                     beta=self.spec.loss.beta, gamma=self.spec.loss.gamma,
                                     cpo_alpha=self.spec.loss.cpo_alpha)
            else:
                if self.ref_cache is not None:
                    ref_sums = self.ref_cache.lookup(batch, "val")
                else:
                    ref = {s: self._seq_log_probs(d, ref=True) for s, d in sides.items()}
                    ref_sums = tuple((ref[s] * mask[s]).sum(-1) for s in ("chosen", "rejected"))
                loss, _ = dpo_loss(*((lp[s] * mask[s]).sum(-1) for s in ("chosen", "rejected")), *ref_sums,
                                   beta=self.spec.loss.beta)
            total += float(loss) * len(batch)
            pairs += len(batch)
        return {"val/loss": total / max(pairs, 1.0)}

    # ------------------------------------------------------------------ around the loop
    def _before_steps(self, resumed: bool) -> dict[str, Any] | None:
        if self.ref_precompute:  # before the first update, from the SFT weights
            from trainer.dpo_ref_cache import prepare_ref_cache  # noqa: PLC0415

            self.ref_cache = prepare_ref_cache(self, resumed)
        if self.val_batches and not resumed and self.spec.trainer.val_before_train:
            self.tracker.log(self.validate(), step=self.global_step)
        return None

    def _after_steps(self) -> None:
        metrics_file = Path(self.local_dir) / "metrics.jsonl"
        if self.kind != "sft" and metrics_file.is_file():  # the chosen / rejected log-prob plot
            from trainer.pair_plotting import plot_pair_metrics  # noqa: PLC0415

            plot_pair_metrics({self.loss_type: metrics_file}, Path(self.local_dir) / "pair_metrics.png")
        if self.spec.trainer.export_hf:
            out = Path(self.local_dir) / "hf"
            self.actor_wg.export_hf(str(out))
            logger.info("exported the trained policy to %s", out)


def run(spec: OfflineRunSpec) -> dict[str, Any]:
    """Entry point used by ``python -m trainer.main_offline``."""
    logging.getLogger("relift").setLevel(logging.INFO)
    return OfflineTrainer(spec).fit()
