"""ReLIFT's hardest-question buffer: prompts that no rollout solved, kept with their demonstration.

ReLIFT (arXiv 2506.07527) interleaves RL with fine-tuning on the questions RL cannot solve: after
each RL update the batch is grouped by prompt (``uid``); a prompt whose mean accuracy over its n
samples is ``<= max_acc`` (default 0: every sample failed) enters this buffer once, with its row's
demonstration. When the buffer holds ``sft_batch_size`` items, the trainer takes them out with
:meth:`HardestBuffer.pop_batch` and runs one fine-tuning step on them.

Differences from the public ReLIFT code, on purpose (see REFERENCE.md section 3):

* ``buffer_order="fifo"`` (default) trains on the oldest items first, so no item starves; the public
  code puts new items at the front of a list and takes the first ``sft_batch_size`` (newest first),
  which ``buffer_order="lifo"`` reproduces.
* An empty or short buffer returns ``None`` (the public code crashed on an empty buffer).
* A prompt without a demonstration is counted (``skipped_no_demo``) and skipped, never a crash.
* ``buffer_size`` optionally caps the buffer; the oldest items are dropped and counted.
* Accuracy is the scorer's ``acc`` (0/1 per sample), not the shaped score.

State (:meth:`state_dict`) is plain JSON data (items, their order, counters), so it loads with
``torch.load(weights_only=True)`` and survives a JSON round trip; a resumed run continues with the
same buffer and the same metrics as one that was never stopped.
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from relift.spec import ReliftSpec

__all__ = ["BUFFER_ORDERS", "BufferItem", "StepStats", "HardestBuffer", "group_accuracy", "rows_from_batch",
           "solve_fractions"]

BUFFER_ORDERS = ("fifo", "lifo")
_STATE_VERSION = 1


@dataclass
class BufferItem:
    """One hardest prompt: its uid, demonstration (text or messages), opaque payload, step added."""

    uid: str
    demonstration: str | list[dict[str, Any]]
    payload: dict[str, Any] = field(default_factory=dict)
    step: int = 0
    mean_acc: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"uid": self.uid, "demonstration": self.demonstration, "payload": self.payload,
                "step": self.step, "mean_acc": self.mean_acc}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BufferItem:
        return cls(uid=str(d["uid"]), demonstration=d["demonstration"], payload=dict(d.get("payload") or {}),
                   step=int(d.get("step", 0)), mean_acc=float(d.get("mean_acc", 0.0)))


@dataclass
class StepStats:
    """What one :meth:`HardestBuffer.add_batch` call saw (prompts, not rows)."""

    num_prompts: int = 0
    solve_none: int = 0      # every sample failed (mean acc == 0)
    solve_all: int = 0       # every sample solved (mean acc == 1)
    hardest: int = 0         # mean acc <= max_acc
    added: int = 0
    skipped_no_demo: int = 0
    dropped: int = 0         # oldest items dropped by the buffer_size cap during this call

    @property
    def solve_partial(self) -> int:
        return self.num_prompts - self.solve_none - self.solve_all


def _plain(value: Any, where: str) -> Any:
    """``value`` as JSON data (numpy arrays/scalars converted); TypeError naming ``where`` otherwise."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars
    if callable(tolist):
        return _plain(tolist(), where)
    raise TypeError(f"{where}: {type(value).__name__} is not JSON data; the buffer is checkpointed as JSON, "
                    "so pass strings, numbers, lists and dicts")


def _is_missing(demo: Any) -> bool:
    if demo is None:
        return True
    if isinstance(demo, float) and math.isnan(demo):  # pandas fills missing cells with NaN
        return True
    if isinstance(demo, str):
        return not demo.strip()
    if isinstance(demo, Mapping):
        return not str(demo.get("content") or "").strip()
    if isinstance(demo, (list, tuple)) or callable(getattr(demo, "tolist", None)):
        msgs = list(demo)
        return not msgs or all(_is_missing(m) for m in msgs)
    return False


def _float_acc(value: Any, row: int) -> float:
    try:
        acc = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"acc of row {row} is {value!r}, not a number (the scorer's per-sample accuracy)") from None
    if math.isnan(acc):
        raise ValueError(f"acc of row {row} is NaN; the scorer must give every sample an accuracy")
    return acc


def group_accuracy(uids: Sequence[Any], accs: Sequence[Any]) -> dict[str, tuple[float, int]]:
    """``uid -> (mean acc, number of samples)`` in the order uids first appear."""
    if len(uids) != len(accs):
        raise ValueError(f"uids and accs differ in length: {len(uids)} vs {len(accs)}")
    sums: dict[str, list[float]] = {}
    for row, (uid, acc) in enumerate(zip(uids, accs)):
        s = sums.setdefault(str(uid), [0.0, 0])
        s[0] += _float_acc(acc, row)
        s[1] += 1
    return {u: (s[0] / s[1], int(s[1])) for u, s in sums.items()}


def solve_fractions(uids: Sequence[Any], accs: Sequence[Any]) -> dict[str, float]:
    """``batch/solve_none|solve_all|solve_partial``: fractions of prompts solved by no/all/some samples."""
    groups = group_accuracy(uids, accs)
    n = max(len(groups), 1)
    none = sum(m <= 0.0 for m, _ in groups.values())
    all_ = sum(m >= 1.0 for m, _ in groups.values())
    return {"batch/solve_none": none / n, "batch/solve_all": all_ / n,
            "batch/solve_partial": (len(groups) - none - all_) / n}


def rows_from_batch(batch: Any, uid_key: str = "uid", acc_key: str = "acc", target_key: str = "target",
                    payload_keys: Sequence[str] = ("raw_prompt", "index")
                    ) -> tuple[list[Any], list[Any], list[Any], list[dict[str, Any]]]:
    """``(uids, accs, demonstrations, payloads)`` for :meth:`HardestBuffer.add_batch` from a scored
    batch's ``non_tensor_batch`` (a DataProto or anything with that attribute; see docs/data_keys.md).

    ``uid``/``acc`` are required (KeyError naming what exists); a missing ``target`` column gives
    None demonstrations (every hardest prompt is then counted as skipped); each payload holds the
    ``payload_keys`` the batch has (by default the prompt messages the policy saw and the row index).
    """
    nt = getattr(batch, "non_tensor_batch", batch)
    for key in (uid_key, acc_key):
        if key not in nt:
            raise KeyError(f"the batch has no non-tensor {key!r} (it has {sorted(nt)}); the ReLIFT hook needs the "
                           "per-prompt uid and the scorer's per-sample acc")
    n = len(nt[uid_key])
    demos = list(nt[target_key]) if target_key in nt else [None] * n
    present = [k for k in payload_keys if k in nt]
    payloads = [{k: nt[k][i] for k in present} for i in range(n)]
    return list(nt[uid_key]), list(nt[acc_key]), demos, payloads


class HardestBuffer:
    """Demonstrations of the hardest prompts, consumed ``sft_batch_size`` at a time.

    Per RL step the trainer calls :meth:`add_batch` with the per-row uid, accuracy, demonstration
    and payload, then :meth:`pop_batch`; when that returns items it runs the fine-tuning step on
    them. :meth:`metrics` gives the step's ``relift/*`` and ``batch/solve_*`` numbers.
    """

    def __init__(self, max_acc: float = 0.0, sft_batch_size: int = 128, buffer_size: int | None = None,
                 buffer_order: str = "fifo") -> None:
        if not 0.0 <= float(max_acc) <= 1.0:
            raise ValueError(f"relift.max_acc must be in [0, 1], got {max_acc}")
        if int(sft_batch_size) < 1:
            raise ValueError(f"relift.sft_batch_size must be >= 1, got {sft_batch_size}")
        if buffer_size is not None and int(buffer_size) < int(sft_batch_size):
            raise ValueError(f"relift.buffer_size ({buffer_size}) must be >= relift.sft_batch_size "
                             f"({sft_batch_size}) or the buffer never fills")
        if buffer_order not in BUFFER_ORDERS:
            raise ValueError(f"relift.buffer_order must be one of {list(BUFFER_ORDERS)}, got {buffer_order!r}")
        self.max_acc = float(max_acc)
        self.sft_batch_size = int(sft_batch_size)
        self.buffer_size = None if buffer_size is None else int(buffer_size)
        self.buffer_order = buffer_order
        self._items: deque[BufferItem] = deque()  # arrival order: left = oldest
        self.added_total = 0
        self.skipped_no_demo_total = 0
        self.dropped_total = 0
        self.sft_steps = 0
        self.demo_sequences = 0   # demonstration sequences trained on (fine-tuning steps)
        self.rl_sequences = 0     # RL sequences trained on (rows of the RL batches)
        self.last = StepStats()

    # ------------------------------------------------------------------ per step
    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[BufferItem]:
        """The buffered items, oldest first (a copy)."""
        return list(self._items)

    def add_batch(self, uids: Sequence[Any], accs: Sequence[Any], demonstrations: Sequence[Any],
                  payloads: Sequence[Mapping[str, Any] | None] | None = None, step: int = 0,
                  rl_sequences: int | None = None) -> StepStats:
        """Group rows by uid; each prompt with mean acc <= max_acc enters the buffer once.

        ``demonstrations[i]``: the row's demonstration (a string, a message list, or None: the
        prompt is then counted in ``skipped_no_demo`` and skipped). ``payloads[i]``: an opaque dict
        kept with the item (e.g. the raw prompt the policy saw); the first row of a uid provides
        both. ``rl_sequences``: rows the RL update trained on (default ``len(uids)``), for
        ``relift/demo_fraction``.
        """
        n = len(uids)
        if len(demonstrations) != n or (payloads is not None and len(payloads) != n):
            raise ValueError(f"per-row inputs differ in length: uids {n}, accs {len(accs)}, demonstrations "
                             f"{len(demonstrations)}, payloads {None if payloads is None else len(payloads)}")
        groups = group_accuracy(uids, accs)
        first_row: dict[str, int] = {}
        demo_row: dict[str, int] = {}
        for row, uid in enumerate(uids):
            key = str(uid)
            first_row.setdefault(key, row)
            if key not in demo_row and not _is_missing(demonstrations[row]):
                demo_row[key] = row
        stats = StepStats(num_prompts=len(groups))
        for uid, (mean, _count) in groups.items():
            stats.solve_none += mean <= 0.0
            stats.solve_all += mean >= 1.0
            if mean > self.max_acc:
                continue
            stats.hardest += 1
            row = demo_row.get(uid)
            if row is None:
                stats.skipped_no_demo += 1
                continue
            demo = _plain(demonstrations[row], f"demonstration of row {row} (uid {uid})")
            payload_row = payloads[first_row[uid]] if payloads is not None else None
            payload = _plain(dict(payload_row or {}), f"payload of row {first_row[uid]} (uid {uid})")
            self._items.append(BufferItem(uid=uid, demonstration=demo, payload=payload, step=int(step),
                                          mean_acc=float(mean)))
            stats.added += 1
        if self.buffer_size is not None:
            while len(self._items) > self.buffer_size:
                self._items.popleft()
                stats.dropped += 1
        self.added_total += stats.added
        self.skipped_no_demo_total += stats.skipped_no_demo
        self.dropped_total += stats.dropped
        self.rl_sequences += n if rl_sequences is None else int(rl_sequences)
        self.last = stats
        return stats

    def ready(self, sft_batch_size: int | None = None) -> bool:
        return len(self._items) >= (self.sft_batch_size if sft_batch_size is None else int(sft_batch_size))

    def pop_batch(self, sft_batch_size: int | None = None) -> list[BufferItem] | None:
        """Take ``sft_batch_size`` items out (fifo: oldest first; lifo: newest first), else None.

        Counts one fine-tuning step and its demonstration sequences: call it only when the step
        will run.
        """
        k = self.sft_batch_size if sft_batch_size is None else int(sft_batch_size)
        if k < 1:
            raise ValueError(f"sft_batch_size must be >= 1, got {k}")
        if len(self._items) < k:
            return None
        pop = self._items.popleft if self.buffer_order == "fifo" else self._items.pop
        out = [pop() for _ in range(k)]
        self.sft_steps += 1
        self.demo_sequences += k
        return out

    # ------------------------------------------------------------------ metrics
    @property
    def demo_fraction(self) -> float:
        total = self.demo_sequences + self.rl_sequences
        return self.demo_sequences / total if total else 0.0

    def metrics(self) -> dict[str, float]:
        """This step's numbers: buffer state after any pop, and the last :meth:`add_batch`'s prompts."""
        s = self.last
        n = max(s.num_prompts, 1)
        return {
            "relift/buffer_size": float(len(self._items)),
            "relift/added": float(s.added),
            "relift/skipped_no_demo": float(s.skipped_no_demo),
            "relift/dropped": float(s.dropped),
            "relift/hardest": float(s.hardest),
            "relift/sft_steps": float(self.sft_steps),
            "relift/demo_fraction": self.demo_fraction,
            "batch/solve_none": s.solve_none / n,
            "batch/solve_all": s.solve_all / n,
            "batch/solve_partial": s.solve_partial / n,
        }

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Items (in order), counters and settings as plain JSON data."""
        return {
            "version": _STATE_VERSION,
            "settings": {"max_acc": self.max_acc, "sft_batch_size": self.sft_batch_size,
                         "buffer_size": self.buffer_size, "buffer_order": self.buffer_order},
            "items": [it.to_dict() for it in self._items],
            "counters": {"added_total": self.added_total, "skipped_no_demo_total": self.skipped_no_demo_total,
                         "dropped_total": self.dropped_total, "sft_steps": self.sft_steps,
                         "demo_sequences": self.demo_sequences, "rl_sequences": self.rl_sequences},
            "last": {"num_prompts": self.last.num_prompts, "solve_none": self.last.solve_none,
                     "solve_all": self.last.solve_all, "hardest": self.last.hardest, "added": self.last.added,
                     "skipped_no_demo": self.last.skipped_no_demo, "dropped": self.last.dropped},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore items and counters. The settings come from the config; a changed setting is
        allowed (say a bigger cap on resume) but the cap is applied to the restored items at once."""
        if int(state.get("version", -1)) != _STATE_VERSION:
            raise ValueError(f"hardest-buffer state version {state.get('version')!r} is not {_STATE_VERSION}")
        self._items = deque(BufferItem.from_dict(d) for d in state["items"])
        c = state["counters"]
        self.added_total = int(c["added_total"])
        self.skipped_no_demo_total = int(c["skipped_no_demo_total"])
        self.dropped_total = int(c["dropped_total"])
        self.sft_steps = int(c["sft_steps"])
        self.demo_sequences = int(c["demo_sequences"])
        self.rl_sequences = int(c["rl_sequences"])
        self.last = StepStats(**{k: int(v) for k, v in state.get("last", {}).items()})
        if self.buffer_size is not None:
            while len(self._items) > self.buffer_size:
                self._items.popleft()
                self.dropped_total += 1

    def to_json(self) -> str:
        return json.dumps(self.state_dict())

    @classmethod
    def from_spec(cls, relift: ReliftSpec) -> HardestBuffer:
        """Build from the run spec's ``relift`` section."""
        return cls(max_acc=relift.max_acc, sft_batch_size=relift.sft_batch_size, buffer_size=relift.buffer_size,
                   buffer_order=relift.buffer_order)

