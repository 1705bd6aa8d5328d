"""trainer/relift_hook.py in the real RL trainer (in-process, tiny model): the fine-tuning step runs on the
hardest prompts, its metrics are logged, and the buffer survives a checkpoint + resume exactly."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from tests.test_rl_trainer import make_workspace, overrides, read_jsonl
from trainer.plan import build_rl_plan, compose_config
from trainer.relift_hook import ReliftHook
from trainer.rl_trainer import RLTrainer

RELIFT = {"relift.enable": True, "relift.sft_batch_size": 4, "relift.sft_micro_batch_size_per_gpu": 4,
          "relift.lr": 1e-3, "relift.max_acc": 0.0, "data.max_target_length": 16}


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    root = make_workspace(tmp_path_factory.mktemp("relift_ws"))
    frame = pd.read_parquet(root / "train.parquet")
    frame["target"] = [[{"role": "assistant", "content": "7777777"}]] * len(frame)
    frame.to_parquet(root / "train.parquet")
    return root


def _fit(ws: Path, out: Path, **extra: object) -> tuple[RLTrainer, ReliftHook, list[dict]]:
    cfg = compose_config("rl_trainer", overrides(ws, out, **{**RELIFT, **extra}))
    trainer = RLTrainer(build_rl_plan(cfg))  # relift.enable=true registers the hook
    [hook] = [h for h in trainer.post_update_hooks if isinstance(h, ReliftHook)]
    trainer.fit()
    return trainer, hook, [r for r in read_jsonl(out / "metrics.jsonl") if "relift/buffer_size" in r]


def test_hook_trains_on_hardest_prompts(ws, tmp_path):
    _, hook, recs = _fit(ws, tmp_path / "a", **{"trainer.total_training_steps": 3})
    assert len(recs) == 3
    last = recs[-1]
    steps = int(last["relift/sft_steps"])
    assert steps >= 1, "a random tiny model fails most prompts: the buffer must fill"
    assert any(math.isfinite(r.get("relift/sft_loss", math.nan)) for r in recs)
    # 3 RL steps x 4 prompts x 4 samples = 48 RL sequences, 4 demonstrations per fine-tuning step
    assert last["relift/demo_fraction"] == pytest.approx(4 * steps / (4 * steps + 48))
    assert hook.buffer.sft_steps == steps and hook.buffer.rl_sequences == 48
    assert all(r["batch/solve_none"] + r["batch/solve_all"] + r["batch/solve_partial"] == pytest.approx(1.0)
               for r in recs)


def test_buffer_state_survives_resume(ws, tmp_path):
    common = {"trainer.total_training_steps": 4, "trainer.save_freq": 2, "relift.sft_batch_size": 12,
              "relift.sft_micro_batch_size_per_gpu": 12}
    _, full_hook, full = _fit(ws, tmp_path / "full", **common)
    # the same run, resumed from its step-2 checkpoint into a new directory
    resumed_dir = tmp_path / "resumed"
    resume = {"trainer.resume_mode": "resume_path", "trainer.resume_from_path": tmp_path / "full" / "global_step_2"}
    _, hook, resumed = _fit(ws, resumed_dir, **common, **resume)
    # it did resume: step 1 never ran again (step 2's line is re-logged from the checkpoint)
    assert [r["step"] for r in resumed if r["step"] != 2] == [3, 4]
    assert full[1]["relift/buffer_size"] > 0  # the checkpoint holds buffered items: losing them would show
    assert hook.state_dict() == full_hook.state_dict()
    keys = ["relift/buffer_size", "relift/added", "relift/sft_steps", "relift/demo_fraction"]
    assert [{k: r[k] for k in keys} for r in resumed if r["step"] > 2] == \
        [{k: r[k] for k in keys} for r in full if r["step"] > 2]
