"""Capability analysis on synthetic samples: every number below is worked out by hand in the comments."""

from __future__ import annotations

import pytest

from relift.metrics.capability import (
    bin_keys,
    bin_labels,
    capability_metrics,
    pass_at_k_curve,
    pool_ids,
    question_counts,
    solve_rate_bin,
    solve_rate_histogram,
    transition_table,
)


def _records(source: str, counts: dict[str, tuple[int, int]]) -> list[dict]:
    recs = []
    for q, (n, c) in counts.items():
        recs += [{"data_source": source, "prompt_id": q, "correct": i < c} for i in range(n)]
    return recs


# model A: q0 never solved, q1 1/4, q2 2/4, q3 4/4; model B: q0 1/4, q1 0/4, q2 3/4, q3 4/4
A = {"q0": (4, 0), "q1": (4, 1), "q2": (4, 2), "q3": (4, 4)}
B = {"q0": (4, 1), "q1": (4, 0), "q2": (4, 3), "q3": (4, 4)}


def test_question_counts_groups_by_source_and_prompt():
    recs = _records("s", A) + _records("t", {"x": (2, 1)})
    assert question_counts(recs) == {"s": A, "t": {"x": (2, 1)}}
    with pytest.raises(KeyError, match="record 0 lacks correct"):
        question_counts([{"data_source": "s", "prompt_id": 0}])


def test_pass_at_k_curve_by_hand():
    curve = pass_at_k_curve(A)
    assert list(curve) == [1, 2, 4]
    # pass@1 = mean(0, 1/4, 2/4, 1) = 0.4375
    assert curve[1] == pytest.approx(0.4375)
    # pass@2: q1 1 - C(3,2)/C(4,2) = 1 - 3/6 = 0.5; q2 1 - C(2,2)/C(4,2) = 5/6; q3 1; q0 0
    assert curve[2] == pytest.approx((0 + 0.5 + 5 / 6 + 1) / 4)
    # pass@4: every question with one correct sample counts: 3 of 4
    assert curve[4] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="outside 1..4"):
        pass_at_k_curve(A, [8])


def test_pass_at_k_curve_stops_at_the_smallest_n():
    assert list(pass_at_k_curve({"a": (8, 1), "b": (6, 0)})) == [1, 2, 4, 6]


@pytest.mark.parametrize("n,c,expected", [
    (4, 0, 0), (8, 1, 1), (4, 1, 2), (3, 1, 3),  # 1/3 lies in (2/8, 3/8]
    (4, 2, 4), (8, 7, 7), (16, 15, 8),            # 15/16 lies in (7/8, 1)
    (4, 4, 9),
])
def test_solve_rate_bin_edges(n, c, expected):
    assert solve_rate_bin(n, c) == expected


def test_bin_labels_and_keys():
    assert bin_labels(4) == ["0", "(0,1/4]", "(1/4,2/4]", "(2/4,3/4]", "(3/4,1)", "1"]
    assert bin_keys(4) == ["eq0", "le1_4", "le2_4", "le3_4", "lt1", "eq1"]
    assert len(bin_labels()) == 10


def test_solve_rate_histogram_by_hand():
    hist = solve_rate_histogram(A)
    assert [h["questions"] for h in hist] == [1, 0, 1, 0, 1, 0, 0, 0, 0, 1]
    assert [h["label"] for h in hist if h["questions"]] == ["0", "(1/8,2/8]", "(3/8,4/8]", "1"]
    assert sum(h["fraction"] for h in hist) == pytest.approx(1.0)
    assert hist[0]["fraction"] == 0.25


def test_transition_table_by_hand():
    rows = {r["bucket"]: r for r in transition_table(A, B)}
    # q0 (A never solved it) -> B solves 1/4: gained, up
    assert rows["0"] == {"bucket": "0", "questions": 1, "a_rate": 0.0, "b_rate": 0.25, "gained": 1, "lost": 0,
                         "up": 1, "down": 0, "solved_a": 0, "solved_b": 1}
    # q1 (A 1/4) -> B 0/4: lost, down
    assert rows["(1/8,2/8]"]["lost"] == 1 and rows["(1/8,2/8]"]["down"] == 1
    assert rows["(1/8,2/8]"]["b_rate"] == 0.0
    # q2 (A 2/4) -> B 3/4: up
    assert rows["(3/8,4/8]"]["up"] == 1 and rows["(3/8,4/8]"]["b_rate"] == 0.75
    # q3 stays solved every time: neither up nor down
    assert rows["1"]["up"] == rows["1"]["down"] == 0
    total = rows["all"]
    assert total["questions"] == 4 and total["gained"] == 1 and total["lost"] == 1
    assert total["up"] == 2 and total["down"] == 1
    assert total["solved_a"] == 3 and total["solved_b"] == 3
    assert total["a_rate"] == pytest.approx(0.4375)
    assert total["b_rate"] == pytest.approx((0.25 + 0 + 0.75 + 1) / 4)
    assert rows["(0,1/8]"]["questions"] == 0 and rows["(0,1/8]"]["a_rate"] == 0.0


def test_transition_table_refuses_different_questions():
    with pytest.raises(ValueError, match="1 only in A"):
        transition_table(A, {k: v for k, v in B.items() if k != "q3"})


def test_pool_ids():
    assert pool_ids(["a", "b", "a", "c", "a"]) == ([0, 1, 0, 2, 0], [3, 1, 1])


def test_capability_metrics_by_hand():
    m = capability_metrics(_records("s", A))
    assert m["val-cap/s/pass@4"] == pytest.approx(0.75)
    assert m["val-cap/s/solve_rate/eq0"] == 0.25
    assert m["val-cap/s/solve_rate/le2_8"] == 0.25
    assert m["val-cap/s/solve_rate/le4_8"] == 0.25
    assert m["val-cap/s/solve_rate/eq1"] == 0.25
    assert m["val-cap/s/solve_rate/lt1"] == 0.0
    assert len(m) == 1 + 10
