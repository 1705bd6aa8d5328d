"""Atomic checkpoint IO: staging + rename, tracker last, rotation, RNG/driver state, kill safety."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from relift.utils import checkpoint as ck
from tests.proc_utils import gloo_rank, sigkill_after

REPO = Path(__file__).resolve().parents[1]


def _save_step(root: Path, step: int, payload: dict, keep: int | None = None) -> Path:
    stage = ck.begin_checkpoint(root, step)
    ck.atomic_save(payload, stage / "actor" / "model.pt")
    ck.write_meta(stage / "actor", world_size=1, global_step=step)
    ck.save_driver_state(stage, {"step": step, "sampler": {"epoch": 0, "pos": step * 4}})
    return ck.commit_checkpoint(root, step, max_to_keep=keep)


def test_commit_renames_into_place_and_writes_tracker(tmp_path):
    assert ck.latest_checkpoint(tmp_path) is None
    stage = ck.begin_checkpoint(tmp_path, 3)
    assert stage.name.startswith(".tmp-") and ck.read_tracker(tmp_path) is None
    ck.atomic_save({"w": torch.arange(3)}, stage / "actor" / "model.pt")
    ck.save_driver_state(stage, {"step": 3, "buffer": [1, 2]})
    final = ck.commit_checkpoint(tmp_path, 3)
    assert final == tmp_path / "global_step_3" and not stage.exists()
    assert (tmp_path / ck.TRACKER_FILE).read_text().strip() == "3"
    assert ck.latest_checkpoint(tmp_path) == final
    assert ck.load_driver_state(final) == {"step": 3, "buffer": [1, 2]}
    assert torch.equal(torch.load(final / "actor" / "model.pt")["w"], torch.arange(3))


def test_commit_without_staging_raises(tmp_path):
    with pytest.raises(ck.CheckpointError, match="begin_checkpoint"):
        ck.commit_checkpoint(tmp_path, 7)


def test_keep_last_k_rotation(tmp_path):
    for step in (1, 2, 3, 4, 5):
        _save_step(tmp_path, step, {"s": step}, keep=2)
    assert ck.list_checkpoints(tmp_path) == [4, 5]
    assert ck.read_tracker(tmp_path) == 5


def test_rotation_never_deletes_the_tracked_step(tmp_path):
    for step in (1, 2, 3):
        _save_step(tmp_path, step, {"s": step})
    ck.write_tracker(tmp_path, 1)  # e.g. a resume from an older step
    removed = ck.rotate_checkpoints(tmp_path, 1)
    assert removed == [2] and ck.list_checkpoints(tmp_path) == [1, 3]


def test_resaving_a_step_replaces_it(tmp_path):
    _save_step(tmp_path, 2, {"v": 1})
    _save_step(tmp_path, 2, {"v": 2})
    assert torch.load(tmp_path / "global_step_2" / "actor" / "model.pt") == {"v": 2}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_interrupted_resave_is_recovered(tmp_path):
    _save_step(tmp_path, 2, {"v": 1})
    # the state a kill between the two renames of a re-save leaves behind
    os.replace(tmp_path / "global_step_2", tmp_path / ".old-global_step_2")
    assert ck.latest_checkpoint(tmp_path) == tmp_path / "global_step_2"
    assert torch.load(tmp_path / "global_step_2" / "actor" / "model.pt") == {"v": 1}


def test_stale_staging_is_ignored_and_cleaned(tmp_path):
    _save_step(tmp_path, 1, {"v": 1})
    stage = ck.begin_checkpoint(tmp_path, 2)
    (stage / "junk").write_text("half")
    assert ck.list_checkpoints(tmp_path) == [1]
    assert ck.latest_checkpoint(tmp_path) == tmp_path / "global_step_1"
    assert ck.cleanup_staging(tmp_path) == [stage] and not stage.exists()


def test_tracker_pointing_to_missing_dir_is_a_clear_error(tmp_path):
    ck.write_tracker(tmp_path, 9)
    with pytest.raises(ck.CheckpointError, match="step 9"):
        ck.latest_checkpoint(tmp_path)
    (tmp_path / ck.TRACKER_FILE).write_text("abc")
    with pytest.raises(ck.CheckpointError, match="not a step number"):
        ck.read_tracker(tmp_path)


def test_world_size_mismatch_message(tmp_path):
    ck.write_meta(tmp_path, world_size=2, global_step=5)
    assert ck.check_world_size(tmp_path, 2)["global_step"] == 5
    with pytest.raises(ck.CheckpointError) as err:
        ck.check_world_size(tmp_path, 4)
    msg = str(err.value)
    assert "world size 2" in msg and "world size 4" in msg and "n_gpus_per_node" in msg
    with pytest.raises(ck.CheckpointError, match="meta.json is missing"):
        ck.check_world_size(tmp_path / "nowhere", 1)


def test_rng_state_round_trip():
    torch.manual_seed(0)
    random.seed(1)
    np.random.seed(2)
    state = ck.get_rng_state()
    want = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(123)
    random.seed(123)
    np.random.seed(123)
    ck.set_rng_state(state)
    got = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(want[0], got[0]) and want[1:] == got[1:]


def test_model_optimizer_scheduler_rng_round_trip_bit_exact(tmp_path):
    from relift.utils.optim import build_lr_scheduler, build_optimizer

    def make():
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        opt = build_optimizer(model.parameters(), lr=1e-2)
        sched = build_lr_scheduler(opt, total_steps=10, schedule="cosine", warmup_steps=2)
        return model, opt, sched

    def train(model, opt, sched, n):
        for _ in range(n):
            x = torch.randn(5, 4)
            loss = model(x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()

    model, opt, sched = make()
    train(model, opt, sched, 3)
    stage = ck.begin_checkpoint(tmp_path, 3)
    ck.atomic_save({"model": model.state_dict(), "optim": opt.state_dict(), "sched": sched.state_dict(),
                    "rng": ck.get_rng_state()}, stage / "actor" / "all.pt")
    ck.commit_checkpoint(tmp_path, 3)
    train(model, opt, sched, 2)  # the uninterrupted run goes on

    model2, opt2, sched2 = make()
    state = ck.safe_load(ck.latest_checkpoint(tmp_path) / "actor" / "all.pt")
    model2.load_state_dict(state["model"])
    opt2.load_state_dict(state["optim"])
    sched2.load_state_dict(state["sched"])
    ck.set_rng_state(state["rng"])
    train(model2, opt2, sched2, 2)  # the resumed run
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)
    assert sched.last_epoch == sched2.last_epoch == 5
    sa, sb = opt.state_dict()["state"], opt2.state_dict()["state"]
    for k in sa:
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(sa[k][name], sb[k][name])


_KILL_SCRIPT = textwrap.dedent("""
    import sys, time, torch
    from relift.utils import checkpoint as ck
    root = sys.argv[1]
    def save(step, slow):
        stage = ck.begin_checkpoint(root, step)
        ck.atomic_save({"w": torch.full((4,), float(step))}, stage / "actor" / "model_world_size_1_rank_0.pt")
        if slow:
            print("MID-SAVE", flush=True)
            time.sleep(60)  # killed here
        ck.atomic_save({"lr": step}, stage / "actor" / "extra_state_world_size_1_rank_0.pt")
        ck.write_meta(stage / "actor", world_size=1, global_step=step)
        ck.save_driver_state(stage, {"step": step})
        ck.commit_checkpoint(root, step, max_to_keep=1)
    save(1, False)
    save(2, True)
""")


def test_sigkill_mid_save_leaves_previous_checkpoint_loadable(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO)
    with sigkill_after(proc):
        line = proc.stdout.readline()
        assert line.strip() == "MID-SAVE", proc.stderr.read()
    assert ck.read_tracker(tmp_path) == 1
    latest = ck.latest_checkpoint(tmp_path)
    assert latest == tmp_path / "global_step_1"
    assert torch.equal(torch.load(latest / "actor" / "model_world_size_1_rank_0.pt")["w"], torch.ones(4))
    assert ck.load_driver_state(latest) == {"step": 1}
    assert ck.list_checkpoints(tmp_path) == [1]
    assert (tmp_path / ".tmp-global_step_2").is_dir()  # the partial save, never mistaken for a checkpoint
    # a later save of step 2 starts clean and commits
    _save_step(tmp_path, 2, {"v": 2}, keep=1)
    assert ck.read_tracker(tmp_path) == 2 and ck.list_checkpoints(tmp_path) == [2]


# ---------------------------------------------------------------------------- FSDP2 shards, 2 ranks (gloo)
def _fsdp_rank(rank: int, world: int, port: int, folder: str) -> None:
    from relift.models.tiny import build_tiny_tokenizer, make_tiny_model
    from relift.utils import fsdp as F

    torch.set_num_threads(1)
    with gloo_rank(rank, world, port):
        tok = build_tiny_tokenizer()
        plain = make_tiny_model(tok, seed=0)
        model = F.apply_fsdp2(make_tiny_model(tok, seed=0))
        assert len(F.get_decoder_layers(plain)) == 2
        ids = torch.randint(0, 256, (2, 7), generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(model(input_ids=ids).logits, plain(input_ids=ids).logits)
        full = F.gather_full_state_dict(model)
        assert all(torch.equal(full[k], v) for k, v in plain.state_dict().items())
        assert (len(F.gather_full_state_dict(model, rank0_only=True)) > 0) == (rank == 0)
        shard = F.local_model_state(model)
        assert shard["model.embed_tokens.weight"].shape[0] < full["model.embed_tokens.weight"].shape[0]

        def train_step(m, opt):
            opt.zero_grad()
            m(input_ids=ids).logits.pow(2).mean().backward()
            F.clip_grad_norm(m.parameters(), 1.0)
            opt.step()

        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        train_step(model, opt)
        path = ck.rank_file(folder, "shards", rank, world)
        ck.atomic_save({"model": F.local_model_state(model), "optim": F.local_optim_state(opt)}, path)
        # a second model (other init) restored from the shards continues bit-exactly
        other = F.apply_fsdp2(make_tiny_model(tok, seed=5))
        other_opt = torch.optim.AdamW(other.parameters(), lr=1e-2)
        saved = ck.safe_load(path)
        F.load_local_model_state(other, saved["model"])
        F.load_local_optim_state(other_opt, saved["optim"])
        train_step(model, opt)
        train_step(other, other_opt)
        a, b = F.gather_full_state_dict(model), F.gather_full_state_dict(other)
        assert all(torch.equal(a[k], b[k]) for k in a)
        bad = dict(saved["model"])
        bad["model.norm.weight"] = torch.zeros(3)
        with pytest.raises(ValueError, match="another world size"):
            F.load_local_model_state(other, bad)


def test_fsdp2_two_ranks_gather_and_shard_round_trip(tmp_path):
    import torch.multiprocessing as mp

    from relift.single_controller.worker import get_free_port

    mp.spawn(_fsdp_rank, args=(2, get_free_port("127.0.0.1"), str(tmp_path)), nprocs=2, join=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shards_world_size_2_rank_0.pt",
                                                         "shards_world_size_2_rank_1.pt"]
