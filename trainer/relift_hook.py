"""ReLIFT as a post-update hook of the RL trainer (registered by :class:`trainer.rl_trainer.RLTrainer`
whenever ``relift.enable`` is true).

After every RL update the trainer calls ``hook(trainer, batch, metrics)``
(trainer/rl_trainer.py, ``post_update_hooks``). This hook puts the batch's hardest prompts into a
:class:`relift.algorithms.hardest_buffer.HardestBuffer`, and when it holds ``relift.sft_batch_size``
items tokenises their demonstrations (:func:`relift.data.demonstrations.build_sft_batch_from_items`)
and runs one fine-tuning step through ``trainer.actor_wg.update_actor_sft``; it adds the ``relift/*``
and ``batch/solve_*`` metrics. ``name`` / ``state_dict`` / ``load_state_dict`` put the buffer into
every checkpoint's driver state (the trainer's hook-state protocol).

The fine-tuning step is one optimiser step over the whole popped batch: the rows are split over the
workers and the FSDP actor normalises by the global token count (all-reduced), so the gradient is
the one-process gradient of the batch's token-mean loss whatever the world size.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from relift.algorithms.hardest_buffer import HardestBuffer, rows_from_batch
from relift.data.demonstrations import build_sft_batch_from_items
from relift.spec import RLRunSpec

__all__ = ["ReliftHook"]


def _mean(value: Any) -> float | None:
    if isinstance(value, (list, tuple)):
        return float(np.mean([float(v) for v in value])) if value else None
    return None if value is None else float(value)


class ReliftHook:
    """The ReLIFT step, given the buffer settings and the data lengths."""

    name = "relift"

    def __init__(self, buffer: HardestBuffer, max_prompt_length: int, max_target_length: int,
                 apply_chat_template: bool = True, prompt_key: str = "raw_prompt") -> None:
        self.buffer = buffer
        self.max_prompt_length = int(max_prompt_length)
        self.max_target_length = int(max_target_length)
        self.apply_chat_template = bool(apply_chat_template)
        self.prompt_key = prompt_key
        self.demo_truncated = 0

    @classmethod
    def from_spec(cls, spec: RLRunSpec) -> ReliftHook:
        """From the run spec's ``relift`` and ``data`` sections."""
        data = spec.data
        return cls(HardestBuffer.from_spec(spec.relift), max_prompt_length=data.max_prompt_length,
                   max_target_length=data.max_target_length or data.max_response_length,
                   apply_chat_template=data.apply_chat_template)

    def __call__(self, trainer: Any, batch: Any, metrics: dict[str, Any]) -> None:
        self.buffer.add_batch(*rows_from_batch(batch), step=int(getattr(trainer, "global_step", 0)))
        items = self.buffer.pop_batch()
        if items is not None:
            data, stats = build_sft_batch_from_items(trainer.tokenizer, items, self.max_target_length,
                                                     prompt_key=self.prompt_key,
                                                     max_prompt_length=self.max_prompt_length,
                                                     apply_chat_template=self.apply_chat_template)
            self.demo_truncated += stats.num_truncated
            out = trainer.actor_wg.update_actor_sft(data)
            worker = out.meta_info.get("metrics", {}) if hasattr(out, "meta_info") else {}
            for src, dst in (("sft/loss", "relift/sft_loss"), ("sft/entropy", "relift/sft_entropy"),
                             ("sft/grad_norm", "relift/sft_grad_norm")):
                value = _mean(worker.get(src))
                if value is not None:
                    metrics[dst] = value
            metrics.update(stats.metrics())
        metrics.update(self.buffer.metrics())
        metrics["relift/demo_truncated_total"] = float(self.demo_truncated)

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict(), "demo_truncated": self.demo_truncated}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.buffer.load_state_dict(state["buffer"])
        self.demo_truncated = int(state.get("demo_truncated", 0))
