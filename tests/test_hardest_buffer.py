"""The ReLIFT hardest-question buffer: grouping, order, cap, missing demos, metrics, state."""

import io
import json

import numpy as np
import pytest
import torch

from relift.algorithms.hardest_buffer import HardestBuffer, group_accuracy, solve_fractions


def _batch(groups: dict[str, list[float]], demo: dict[str, object] | None = None):
    """Rows for ``add_batch``: n rows per uid with the given accuracies."""
    uids, accs, demos, payloads = [], [], [], []
    for uid, acc in groups.items():
        for a in acc:
            uids.append(uid)
            accs.append(a)
            demos.append((demo or {}).get(uid, f"demo-{uid}"))
            payloads.append({"prompt": [{"role": "user", "content": f"q-{uid}"}]})
    return uids, accs, demos, payloads


def test_empty_buffer_pop_is_none_and_metrics_are_zero():
    buf = HardestBuffer(sft_batch_size=2)
    assert buf.pop_batch() is None
    assert buf.pop_batch(1) is None
    m = buf.metrics()
    assert m["relift/buffer_size"] == 0 and m["relift/sft_steps"] == 0 and m["relift/demo_fraction"] == 0.0


def test_nothing_hardest_does_nothing():
    buf = HardestBuffer(sft_batch_size=1)
    stats = buf.add_batch(*_batch({"a": [1, 0, 0, 0], "b": [1, 1, 1, 1]}))
    assert stats.added == 0 and len(buf) == 0 and buf.pop_batch() is None
    m = buf.metrics()
    assert m["relift/added"] == 0 and m["relift/sft_steps"] == 0
    assert m["batch/solve_none"] == 0 and m["batch/solve_all"] == 0.5 and m["batch/solve_partial"] == 0.5


def test_max_acc_semantics_hand_computed():
    # means: a 0/4 = 0, b 1/4 = 0.25, c 2/4 = 0.5, d 4/4 = 1
    groups = {"a": [0, 0, 0, 0], "b": [0, 1, 0, 0], "c": [1, 0, 1, 0], "d": [1, 1, 1, 1]}
    assert group_accuracy(*_batch(groups)[:2]) == {"a": (0.0, 4), "b": (0.25, 4), "c": (0.5, 4), "d": (1.0, 4)}
    for max_acc, expected in [(0.0, ["a"]), (0.25, ["a", "b"]), (0.3, ["a", "b"]), (0.5, ["a", "b", "c"]),
                              (1.0, ["a", "b", "c", "d"])]:
        buf = HardestBuffer(max_acc=max_acc, sft_batch_size=1)
        buf.add_batch(*_batch(groups))
        assert [it.uid for it in buf.items()] == expected, max_acc
        assert [it.demonstration for it in buf.items()] == [f"demo-{u}" for u in expected]
    assert solve_fractions(*_batch(groups)[:2]) == {"batch/solve_none": 0.25, "batch/solve_all": 0.25,
                                                    "batch/solve_partial": 0.5}


def test_one_item_per_prompt_with_first_rows_payload():
    buf = HardestBuffer(sft_batch_size=1)
    uids = ["x", "x", "x"]
    buf.add_batch(uids, [0, 0, 0], [None, "second", "third"], [{"i": 0}, {"i": 1}, {"i": 2}])
    (item,) = buf.items()
    assert item.demonstration == "second"  # first row that has one
    assert item.payload == {"i": 0}
    assert item.mean_acc == 0.0


def test_missing_demos_are_counted_and_skipped():
    buf = HardestBuffer(sft_batch_size=1)
    groups = {"a": [0, 0], "b": [0, 0], "c": [0, 0], "d": [0, 0], "e": [0, 0]}
    demos = {"a": None, "b": "", "c": [], "d": float("nan"), "e": [{"role": "assistant", "content": "ok"}]}
    stats = buf.add_batch(*_batch(groups, demos))
    assert stats.skipped_no_demo == 4 and stats.added == 1
    assert buf.skipped_no_demo_total == 4
    assert buf.items()[0].demonstration == [{"role": "assistant", "content": "ok"}]
    assert buf.metrics()["relift/skipped_no_demo"] == 4


def test_fifo_and_lifo_order():
    fifo, lifo = HardestBuffer(sft_batch_size=2), HardestBuffer(sft_batch_size=2, buffer_order="lifo")
    for step, uid in enumerate(["p1", "p2", "p3"]):
        for buf in (fifo, lifo):
            buf.add_batch(*_batch({uid: [0, 0]}), step=step)
    assert [it.uid for it in fifo.pop_batch()] == ["p1", "p2"]
    assert [it.uid for it in lifo.pop_batch()] == ["p3", "p2"]  # newest first, as the public code
    assert [it.uid for it in fifo.items()] == ["p3"]
    assert [it.uid for it in lifo.items()] == ["p1"]


def test_no_starvation_under_fifo():
    """An item added at step 0 is trained before any item added later; under lifo it waits forever."""
    fifo, lifo = HardestBuffer(sft_batch_size=2), HardestBuffer(sft_batch_size=2, buffer_order="lifo")
    consumed = {"fifo": [], "lifo": []}
    for step in range(10):
        for name, buf in (("fifo", fifo), ("lifo", lifo)):
            # three new hardest prompts each step, two consumed per step
            buf.add_batch(*_batch({f"s{step}-{k}": [0, 0] for k in range(3)}), step=step)
            items = buf.pop_batch()
            consumed[name].extend(it.uid for it in items)
    assert consumed["fifo"][:2] == ["s0-0", "s0-1"]
    assert consumed["fifo"].index("s0-2") < consumed["fifo"].index("s1-2")
    assert "s0-0" not in consumed["lifo"]  # the oldest item starves under newest-first


def test_cap_drops_oldest_and_counts():
    buf = HardestBuffer(sft_batch_size=2, buffer_size=3)
    buf.add_batch(*_batch({"a": [0], "b": [0]}))
    stats = buf.add_batch(*_batch({"c": [0], "d": [0], "e": [0]}))
    assert stats.dropped == 2 and buf.dropped_total == 2
    assert [it.uid for it in buf.items()] == ["c", "d", "e"]
    assert buf.metrics()["relift/dropped"] == 2
    with pytest.raises(ValueError, match="buffer_size"):
        HardestBuffer(sft_batch_size=4, buffer_size=3)


def test_counters_and_demo_fraction():
    buf = HardestBuffer(sft_batch_size=2)
    buf.add_batch(*_batch({"a": [0, 0, 0, 0], "b": [0, 0, 0, 0], "c": [1, 1, 1, 1]}))  # 12 RL rows
    assert buf.pop_batch() is not None
    m = buf.metrics()
    assert m["relift/sft_steps"] == 1 and m["relift/added"] == 2 and m["relift/buffer_size"] == 0
    assert m["relift/demo_fraction"] == pytest.approx(2 / 14)
    buf.add_batch(*_batch({"d": [1, 1]}), rl_sequences=6)
    assert buf.metrics()["relift/demo_fraction"] == pytest.approx(2 / 20)
    assert buf.metrics()["relift/sft_steps"] == 1  # cumulative


def test_bad_input_raises_clear_errors():
    buf = HardestBuffer()
    with pytest.raises(ValueError, match="length"):
        buf.add_batch(["a", "a"], [0], ["d", "d"])
    with pytest.raises(ValueError, match="row 1"):
        buf.add_batch(["a", "a"], [0, float("nan")], ["d", "d"])
    with pytest.raises(TypeError, match="payload of row 0"):
        buf.add_batch(["a"], [0], ["d"], [{"bad": object()}])
    with pytest.raises(ValueError, match="buffer_order"):
        HardestBuffer(buffer_order="random")


def test_numpy_inputs_become_json():
    buf = HardestBuffer(sft_batch_size=1)
    uids = np.array(["u", "u"], dtype=object)
    demo = np.array([{"role": "assistant", "content": "x"}], dtype=object)
    buf.add_batch(uids, np.array([0.0, 0.0]), [demo, demo], [{"gt": np.int64(3), "v": np.arange(2)}] * 2)
    item = buf.items()[0]
    assert item.payload == {"gt": 3, "v": [0, 1]}
    json.dumps(buf.state_dict())


def _drive(buf: HardestBuffer, steps: range) -> list[tuple[list[str] | None, dict]]:
    rng = np.random.default_rng(0)
    out = []
    for step in steps:
        rng = np.random.default_rng(step)
        groups = {f"s{step}-{k}": rng.integers(0, 2, size=4).tolist() if k % 2 else [0, 0, 0, 0]
                  for k in range(5)}
        buf.add_batch(*_batch(groups), step=step)
        items = buf.pop_batch()
        out.append(([it.uid for it in items] if items else None, buf.metrics()))
    return out


@pytest.mark.parametrize("order", ["fifo", "lifo"])
def test_state_round_trip_gives_identical_behaviour(order):
    ref = HardestBuffer(sft_batch_size=4, buffer_size=9, buffer_order=order)
    full = _drive(ref, range(8))

    first = HardestBuffer(sft_batch_size=4, buffer_size=9, buffer_order=order)
    head = _drive(first, range(3))
    # through torch.save / torch.load(weights_only=True) and through JSON
    f = io.BytesIO()
    torch.save(first.state_dict(), f)
    f.seek(0)
    state = torch.load(f, weights_only=True)
    state = json.loads(json.dumps(state))
    resumed = HardestBuffer(sft_batch_size=4, buffer_size=9, buffer_order=order)
    resumed.load_state_dict(state)
    assert resumed.metrics() == first.metrics()
    tail = _drive(resumed, range(3, 8))
    assert head + tail == full
    assert resumed.state_dict() == ref.state_dict()


def test_from_spec():
    from relift.spec import MicroBatching, ReliftSpec

    spec = ReliftSpec(enable=True, max_acc=0.25, sft_batch_size=8, sft_per_worker=8, buffer_size=None,
                      micro=MicroBatching(False, 8, 0), entropy_coeff=0.001, loss_agg_mode="token-mean", lr=None,
                      sft_optimizer="shared", buffer_order="lifo")
    buf = HardestBuffer.from_spec(spec)
    assert (buf.max_acc, buf.sft_batch_size, buf.buffer_size, buf.buffer_order) == (0.25, 8, None, "lifo")


def test_rows_from_a_scored_dataproto_to_sft_items():
    from relift.algorithms.hardest_buffer import rows_from_batch
    from relift.protocol import DataProto

    msgs = np.empty(4, dtype=object)
    for i, q in enumerate(["a", "a", "b", "b"]):
        msgs[i] = [{"role": "user", "content": q}]
    batch = DataProto.from_dict(
        tensors={"responses": torch.zeros(4, 2, dtype=torch.long)},
        non_tensors={"uid": np.array(["u1", "u1", "u2", "u2"], dtype=object),
                     "acc": np.array([0.0, 0.0, 1.0, 0.0], dtype=object),
                     "target": np.array(["demo a", "demo a", None, None], dtype=object),
                     "raw_prompt": msgs, "index": np.array([7, 7, 9, 9], dtype=object)})
    buf = HardestBuffer(sft_batch_size=1)
    buf.add_batch(*rows_from_batch(batch), step=3)
    (item,) = buf.items()
    assert (item.uid, item.demonstration, item.step) == ("u1", "demo a", 3)
    assert item.payload == {"raw_prompt": [{"role": "user", "content": "a"}], "index": 7}
    no_target = DataProto.from_dict(tensors={"responses": torch.zeros(2, 2, dtype=torch.long)},
                                    non_tensors={"uid": np.array(["x", "x"], dtype=object),
                                                 "acc": np.array([0.0, 0.0], dtype=object)})
    stats = buf.add_batch(*rows_from_batch(no_target))
    assert stats.skipped_no_demo == 1 and stats.added == 0
    with pytest.raises(KeyError, match="'acc'"):
        rows_from_batch(DataProto.from_dict(non_tensors={"uid": np.array(["x"], dtype=object)}))
