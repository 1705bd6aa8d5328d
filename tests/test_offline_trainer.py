"""The offline trainer on a tiny model: SFT learns (train and validation loss fall), checkpoints,
resume continues the same losses, HF export loads; REDI / DPO / SimPO run on pairs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from relift.utils import checkpoint as ck
from trainer.offline_trainer import OfflineTrainer, to_actor_layout
from trainer.plan import PlanError, build_offline_plan, compose_config


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    from relift.models.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("offline_ws")
    build_tiny_model(root / "model", hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                     intermediate_size=64, max_position_embeddings=128)
    rows = [{"prompt": [{"role": "user", "content": f"q{i}"}],
             "target": [{"role": "assistant", "content": "7777"}], "chosen": "7777", "rejected": "abcd"}
            for i in range(32)]
    pd.DataFrame(rows).to_parquet(root / "train.parquet")
    pd.DataFrame(rows[:4]).to_parquet(root / "val.parquet")
    return root


def run(ws: Path, out: Path, **extra: object) -> tuple[OfflineTrainer, list[dict]]:
    base = {"data.train_files": ws / "train.parquet", "data.val_files": ws / "val.parquet",
            "model.path": ws / "model", "data.max_length": 48, "data.train_batch_size": 4,
            "data.micro_batch_size_per_gpu": 2, "optim.lr": 1e-2, "trainer.total_training_steps": 4,
            "trainer.default_local_dir": out, "trainer.device": "cpu", "trainer.logger": "[jsonl]",
            "trainer.backend": "inprocess"}
    base.update(extra)
    cfg = compose_config("offline_trainer", [f"{k}={v}" for k, v in base.items()])
    trainer = OfflineTrainer(build_offline_plan(cfg))
    trainer.fit()
    return trainer, [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]


def test_sft_learns_checkpoints_and_exports(ws, tmp_path):
    torch.manual_seed(0)
    out = tmp_path / "sft"
    _, recs = run(ws, out, **{"trainer.test_freq": 2, "trainer.save_freq": 2, "trainer.val_before_train": True,
                              "trainer.export_hf": True})
    assert [r["step"] for r in recs] == [0, 1, 2, 3, 4]
    losses = [r["train/loss"] for r in recs[1:]]
    assert losses[-1] < losses[0] - 0.5, losses
    vals = [r["val/loss"] for r in recs if "val/loss" in r]
    assert len(vals) == 3 and vals[-1] < vals[0] - 0.5, vals
    for key in ("train/lr", "train/grad_norm", "sft/loss", "timing_s/step", "training/global_step"):
        assert key in recs[-1]
    assert recs[-1]["train/lr"] == pytest.approx(1e-2)
    assert ck.list_checkpoints(out) == [2, 4]

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out / "hf")
    assert (out / "hf" / "tokenizer.json").is_file()
    ids = torch.tensor([[1, 2, 3, 4]])
    assert torch.isfinite(model(input_ids=ids).logits).all()


def test_sft_resume_continues_the_same_losses(ws, tmp_path):
    _, full = run(ws, tmp_path / "full", **{"trainer.save_freq": 2})
    # the same run stopped after step 2 (constant lr: the schedule does not depend on the total)...
    run(ws, tmp_path / "cut", **{"trainer.save_freq": 2, "trainer.total_training_steps": 2})
    # a kill between the checkpoint commit and the step's metrics line loses that line: drop it
    log = tmp_path / "cut" / "metrics.jsonl"
    lines = log.read_text().splitlines()
    assert json.loads(lines[-1])["step"] == 2
    log.write_text("\n".join(lines[:-1]) + "\n")
    # ...then resumed to step 4: step 2's line comes back from the checkpoint's driver state
    _, resumed = run(ws, tmp_path / "cut", **{"trainer.save_freq": 2})
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]
    assert resumed[1]["train/loss"] == pytest.approx(full[1]["train/loss"], rel=1e-5)
    for a, b in zip(full[2:], resumed[2:]):
        assert math.isclose(a["train/loss"], b["train/loss"], rel_tol=1e-5), \
            (a["step"], a["train/loss"], b["train/loss"])
        assert math.isclose(a["val/loss"] if "val/loss" in a else 0, b.get("val/loss", 0), rel_tol=1e-5)


@pytest.mark.parametrize("loss", ["redi", "dpo", "simpo"])
def test_pair_losses_run_and_learn(ws, tmp_path, loss):
    trainer, recs = run(ws, tmp_path / loss, **{"data.kind": "pairs", "loss.type": loss,
                                                "trainer.total_training_steps": 3})
    assert [r["step"] for r in recs] == [1, 2, 3]
    for r in recs:
        assert all(math.isfinite(v) for v in r.values() if isinstance(v, (int, float)))
        assert f"{loss}/loss" in r and "train/loss" in r
    assert "val/loss" in recs[-1]
    assert trainer.groups.has_ref == (loss == "dpo")
    if loss == "dpo":
        assert recs[0]["dpo/loss"] == pytest.approx(math.log(2), abs=1e-4)  # policy == reference at step 1
        assert "timing_s/ref" in recs[0]
    assert recs[-1]["train/loss"] < recs[0]["train/loss"]


def test_loss_and_data_kind_must_match(ws, tmp_path):
    cfg = compose_config("offline_trainer", [f"data.train_files={ws / 'train.parquet'}", f"model.path={ws / 'model'}",
                                             "loss.type=dpo", "data.kind=sft"])
    with pytest.raises(PlanError, match="loss.type=dpo needs data.kind=pairs"):
        build_offline_plan(cfg)


def test_actor_layout_scores_exactly_the_completion_tokens():
    from relift.protocol import DataProto

    ids = torch.tensor([[5, 6, 7, 8, 0]])
    attn = torch.tensor([[1, 1, 1, 1, 0]])
    loss_mask = torch.tensor([[0, 0, 1, 1, 0]])
    data = to_actor_layout(DataProto.from_dict(tensors={"input_ids": ids, "attention_mask": attn,
                                                        "position_ids": torch.tensor([[0, 1, 2, 3, 3]]),
                                                        "loss_mask": loss_mask}))
    assert data.batch["responses"].tolist() == [[6, 7, 8, 0]]
    assert data.batch["response_mask"].tolist() == [[0, 1, 1, 0]]  # tokens 7 and 8


def test_dpo_cached_reference_matches_the_live_reference(ws, tmp_path):
    """ref.precompute: the SFT model's log-probs cached before step 1 give the same DPO run, no ref worker."""
    kw = {"data.kind": "pairs", "loss.type": "dpo", "trainer.total_training_steps": 3, "loss.beta": 0.5}
    _, live = run(ws, tmp_path / "live", **kw)
    trainer, cached = run(ws, tmp_path / "cached", **kw, **{"ref.precompute": True})
    assert not trainer.groups.has_ref and "timing_s/ref" not in cached[0]
    assert (tmp_path / "cached" / "dpo_ref_cache.pt").is_file()
    assert cached[0]["dpo/loss"] == pytest.approx(math.log(2), abs=1e-4)
    for a, b in zip(live, cached):
        for key in ("dpo/loss", "dpo/rewards/margins", "val/loss"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-5), (a["step"], key)


def test_redi_run_logs_and_plots_the_pair_numbers(ws, tmp_path):
    """Each step: chosen/rejected per-token log-prob, margin, fraction chosen > rejected; a PNG at the end."""
    _, recs = run(ws, tmp_path / "redi", **{"data.kind": "pairs", "loss.type": "redi",
                                            "trainer.total_training_steps": 3})
    for r in recs:
        assert r["redi/margins"] == pytest.approx(r["redi/logps/chosen"] - r["redi/logps/rejected"], abs=1e-5)
        assert 0.0 <= r["redi/accuracies"] <= 1.0
    assert recs[-1]["redi/accuracies"] == 1.0  # "7777" is learnt, "abcd" pushed down
    assert (tmp_path / "redi" / "pair_metrics.png").stat().st_size > 10_000
