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
from omegaconf import DictConfig, OmegaConf, open_dict

from relift.algorithms.losses import dpo_loss, redi_loss, simpo_loss
from relift.protocol import DataProto
from relift.utils.timer import timed
from relift.utils.tracking import Tracking
from trainer.rl_trainer import reduce_metrics
from trainer.run_checkpoint import load_run_checkpoint, save_run_checkpoint

__all__ = ["OfflineTrainer", "run", "to_actor_layout", "to_pair_layout"]

logger = logging.getLogger(__name__)

_PAIR_LOSSES = ("redi", "dpo", "simpo")


def _sel(cfg: Any, key: str, default: Any = None) -> Any:
    value = OmegaConf.select(cfg, key, default=default)
    return default if value is None else value


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


class OfflineTrainer:
    """Holds the offline loop's state; ``fit()`` runs it (see the module docstring)."""

    def __init__(self, cfg: DictConfig, plan: Any = None) -> None:
        self.cfg = cfg
        self.plan = plan
        self.kind = str(_sel(cfg, "data.kind", "sft"))
        self.loss_type = str(_sel(cfg, "loss.type", "sft"))
        if self.loss_type not in ("sft", *_PAIR_LOSSES):
            raise ValueError(f"loss.type={self.loss_type!r}; expected sft, redi, dpo or simpo")
        if (self.loss_type == "sft") != (self.kind == "sft"):
            raise ValueError(f"loss.type={self.loss_type} does not go with data.kind={self.kind} "
                             "(sft needs data.kind=sft; redi/dpo/simpo need data.kind=pairs)")
        self.uses_ref = self.loss_type == "dpo"
        # redi branch: ref.precompute = DPO reference from the untrained policy, cached (trainer/dpo_ref_cache.py)
        self.ref_cache: Any = None
        self.ref_precompute = self.uses_ref and bool(_sel(cfg, "ref.precompute", False))
        self.batch_size = int(_sel(cfg, "data.train_batch_size"))
        self.local_dir = str(_sel(cfg, "trainer.default_local_dir"))
        self.seed = int(_sel(cfg, "trainer.seed", 1))
        self.global_step = 0
        self.epoch = 0
        self.groups: Any = None
        self.actor_wg: Any = None
        self.tracker: Tracking | None = None

    # ------------------------------------------------------------------ setup
    def _dataset(self, files: Any) -> Any:
        from relift.data import PairDataset, SFTDataset  # noqa: PLC0415

        data_cfg = OmegaConf.to_container(self.cfg.data, resolve=True)
        cls = SFTDataset if self.kind == "sft" else PairDataset
        return cls(files, self.tokenizer, config=data_cfg)

    def _build_data(self) -> None:
        from relift.data import collate_to_dataproto, make_dataloader  # noqa: PLC0415
        from relift.models.loading import load_tokenizer  # noqa: PLC0415

        model = self.cfg.model
        self.tokenizer = load_tokenizer(model.get("tokenizer_path") or model.path,
                                        trust_remote_code=bool(model.get("trust_remote_code", False)))
        self.train_dataset = self._dataset(OmegaConf.to_container(self.cfg.data, resolve=True)["train_files"])
        if len(self.train_dataset) < self.batch_size:
            raise ValueError(f"data.train_files has {len(self.train_dataset)} usable rows, fewer than "
                             f"data.train_batch_size ({self.batch_size})")
        self.train_loader = make_dataloader(self.train_dataset, batch_size=self.batch_size,
                                            seed=int(_sel(self.cfg, "data.seed", self.seed)),
                                            shuffle=bool(_sel(self.cfg, "data.shuffle", True)), drop_last=True,
                                            collate_fn=collate_to_dataproto,
                                            num_workers=int(_sel(self.cfg, "data.dataloader_num_workers", 0)))
        self.val_batches: list[DataProto] = []
        val_files = _sel(self.cfg, "data.val_files")
        if val_files:
            val_ds = self._dataset(OmegaConf.to_container(self.cfg.data, resolve=True)["val_files"])
            vbs = int(_sel(self.cfg, "data.val_batch_size", self.batch_size))
            rows = [val_ds[i] for i in range(len(val_ds))]
            self.val_batches = [collate_to_dataproto(rows[s:s + vbs]) for s in range(0, len(rows), vbs)]
        steps_per_epoch = len(self.train_loader)
        total = _sel(self.cfg, "trainer.total_training_steps")
        self.total_steps = int(total) if total else steps_per_epoch * int(_sel(self.cfg, "trainer.total_epochs", 1))
        with open_dict(self.cfg):
            self.cfg.optim.total_training_steps = self.total_steps
            self.cfg.trainer.total_training_steps = self.total_steps
        logger.info("offline %s: %d train rows, %d steps per epoch, %d steps", self.loss_type,
                    len(self.train_dataset), steps_per_epoch, self.total_steps)

    def _build_workers(self) -> None:
        from trainer.workers_setup import build_worker_groups  # noqa: PLC0415

        device = getattr(self.plan, "device", None) or str(_sel(self.cfg, "trainer.device", "auto"))
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        # the worker has no actor+ref role without a rollout, so DPO builds actor_rollout_ref (one idle engine)
        self.groups = build_worker_groups(self.cfg, nnodes=int(_sel(self.cfg, "trainer.nnodes", 1)),
                                          n_gpus_per_node=int(_sel(self.cfg, "trainer.n_gpus_per_node", 1)),
                                          device=device, with_ref=self.uses_ref and not self.ref_precompute,
                                          with_reward=False, with_rollout=self.uses_ref and not self.ref_precompute)
        self.actor_wg = self.groups.actor

    def _build_tracker(self) -> None:
        loggers = _sel(self.cfg, "trainer.logger", ["console"])
        loggers = [loggers] if isinstance(loggers, str) else list(loggers)
        self.tracker = Tracking(str(_sel(self.cfg, "trainer.project_name", "relift")),
                                str(_sel(self.cfg, "trainer.experiment_name", "offline")), loggers,
                                config=self.cfg, local_dir=self.local_dir,
                                console_keys={"loss": "train/loss", "val_loss": "val/loss", "lr": "train/lr",
                                              "grad_norm": "train/grad_norm", "step_s": "timing_s/step",
                                              **self._pair_console_keys()})

    def _pair_console_keys(self) -> dict[str, str]:
        """redi branch: chosen/rejected log-prob, margin, chosen > rejected on the console (trainer/pair_plotting.py)."""
        if self.kind == "sft":
            return {}
        from trainer.pair_plotting import console_keys  # noqa: PLC0415

        return console_keys(self.loss_type)

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
                                    alpha=float(_sel(self.cfg, "loss.alpha", 0.8)))
            elif self.loss_type == "simpo":
                loss, _ = simpo_loss(lp["chosen"], mask["chosen"], lp["rejected"], mask["rejected"],
                                     beta=float(_sel(self.cfg, "loss.beta", 2.0)),
                                     gamma=float(_sel(self.cfg, "loss.gamma", 1.0)))
            else:
                if self.ref_cache is not None:
                    ref_sums = self.ref_cache.lookup(batch, "val")
                else:
                    ref = {s: self._seq_log_probs(d, ref=True) for s, d in sides.items()}
                    ref_sums = tuple((ref[s] * mask[s]).sum(-1) for s in ("chosen", "rejected"))
                loss, _ = dpo_loss(*((lp[s] * mask[s]).sum(-1) for s in ("chosen", "rejected")), *ref_sums,
                                   beta=float(_sel(self.cfg, "loss.beta", 0.1)))
            total += float(loss) * len(batch)
            pairs += len(batch)
        return {"val/loss": total / max(pairs, 1.0)}

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, step_metrics: dict[str, Any]) -> Path:
        """Atomic save of the policy workers and the driver state for ``self.global_step``."""
        keep = _sel(self.cfg, "trainer.max_ckpt_to_keep")
        return save_run_checkpoint(self.local_dir, self.global_step, self.epoch, self.actor_wg, self.train_loader,
                                   step_metrics, max_to_keep=None if keep is None else int(keep))

    def load_checkpoint(self) -> bool:
        """Resume per ``trainer.resume_mode``; returns True when a checkpoint was loaded."""
        state = load_run_checkpoint(str(_sel(self.cfg, "trainer.resume_mode", "auto")), self.local_dir,
                                    _sel(self.cfg, "trainer.resume_from_path"), self.actor_wg, self.train_loader,
                                    self.tracker)
        if state is None:
            return False
        self.global_step = state["global_step"]
        self.epoch = int(state.get("epoch", 0))
        return True

    # ------------------------------------------------------------------ the loop
    def fit(self) -> dict[str, Any]:
        """Set up, (resume,) train to the last step, export when asked; returns the last metrics."""
        from tqdm.auto import tqdm  # noqa: PLC0415

        from relift.utils.seed import set_seed  # noqa: PLC0415

        set_seed(self.seed)
        self._build_data()
        self._build_tracker()
        last: dict[str, Any] = {}
        try:
            self._build_workers()
            resumed = self.load_checkpoint()
            if self.ref_precompute:  # redi branch: before the first update, from the SFT weights
                from trainer.dpo_ref_cache import prepare_ref_cache  # noqa: PLC0415

                self.ref_cache = prepare_ref_cache(self, resumed)
            test_freq = int(_sel(self.cfg, "trainer.test_freq", -1))
            save_freq = int(_sel(self.cfg, "trainer.save_freq", -1))
            if self.val_batches and not resumed and bool(_sel(self.cfg, "trainer.val_before_train", False)):
                self.tracker.log(self.validate(), step=self.global_step)
            steps_per_epoch = max(len(self.train_loader), 1)
            bar = tqdm(total=self.total_steps, initial=self.global_step, desc=f"{self.loss_type} steps",
                       unit="step", dynamic_ncols=True)
            while self.global_step < self.total_steps:
                for batch in self.train_loader:
                    self.global_step += 1
                    self.epoch = (self.global_step - 1) // steps_per_epoch
                    metrics = self.train_step(batch)
                    metrics["training/global_step"] = self.global_step
                    metrics["training/epoch"] = self.epoch
                    is_last = self.global_step >= self.total_steps
                    if self.val_batches and ((test_freq > 0 and self.global_step % test_freq == 0) or is_last):
                        with timed("testing", metrics):
                            metrics.update(self.validate())
                    if save_freq > 0 and (self.global_step % save_freq == 0 or is_last):
                        with timed("save_checkpoint", metrics):
                            self.save_checkpoint(metrics)
                    self.tracker.log(metrics, step=self.global_step)
                    bar.update(1)
                    last = metrics
                    if is_last:
                        break
            bar.close()
            if self.kind != "sft" and (Path(self.local_dir) / "metrics.jsonl").is_file():  # redi branch: the plot
                from trainer.pair_plotting import plot_pair_metrics  # noqa: PLC0415

                plot_pair_metrics({self.loss_type: Path(self.local_dir) / "metrics.jsonl"},
                                  Path(self.local_dir) / "pair_metrics.png")
            if bool(_sel(self.cfg, "trainer.export_hf", False)):
                out = Path(self.local_dir) / "hf"
                self.actor_wg.export_hf(str(out))
                logger.info("exported the trained policy to %s", out)
            return last
        finally:
            if self.groups is not None:
                self.groups.shutdown()
            if self.tracker is not None:
                self.tracker.finish()


def run(cfg: DictConfig, plan: Any = None) -> dict[str, Any]:
    """Entry point used by ``python -m trainer.main_offline``."""
    logging.getLogger("relift").setLevel(logging.INFO)
    return OfflineTrainer(cfg, plan).fit()
