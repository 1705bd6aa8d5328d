"""Math scorer (math-verify) and the data_source registry."""

from __future__ import annotations

import json
import random
import threading

import pandas as pd
import pytest

from relift.rewards import compute_score, get_reward_fn, known_data_sources, register_reward, registry
from relift.rewards import math as rmath

# MATH-500 rows where a *different* problem's reference answer is (rightly or wrongly) accepted.
# Each entry: row id -> reason.  The test fails if the list goes stale in either direction.
MATH500_KNOWN_FALSE_POSITIVES = {
    22: "gold '5' vs other answer 'x=5': math-verify unwraps the assignment x=5 to 5 (by design)",
}


def _load_math500(shared_data):
    path = shared_data / "benchmarks" / "math500.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_math500_reference_answers_all_correct_and_others_wrong(shared_data):
    rows = _load_math500(shared_data)
    assert len(rows) == 500
    wrong_ref, wrong_solution, accepted_other = [], [], {}
    for i, row in enumerate(rows):
        gt = row["answer"]
        response = f"<think>\nLet me work it out.\n</think>\nSo the answer is $\\boxed{{{gt}}}$."
        out = rmath.compute_score_dict(response, gt)
        if out["score"] != 1.0 or out["acc"] != 1.0 or not out["format"] or out["pred"] != gt.strip():
            wrong_ref.append((i, gt, out))
        # the dataset's own worked solution (its last \boxed{} is the reference answer)
        if rmath.compute_score(row["solution"], gt) != 1.0:
            wrong_solution.append((i, gt))
        # the next problem whose answer is a different string
        j = (i + 1) % len(rows)
        while rows[j]["answer"].strip() == gt.strip():
            j = (j + 1) % len(rows)
        other = f"<think>x</think>The answer is \\boxed{{{rows[j]['answer']}}}."
        if rmath.compute_score(other, gt) != 0.0:
            accepted_other[i] = (gt, rows[j]["answer"])
    assert wrong_ref == []
    assert wrong_solution == []
    assert set(accepted_other) == set(MATH500_KNOWN_FALSE_POSITIVES), accepted_other


@pytest.mark.parametrize("text, expected", [
    ("a \\boxed{1} then \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("\\boxed{{a}^{b_{c}}}", "{a}^{b_{c}}"),
    ("\\fbox{7}", "7"),
    ("final: \\boxed 5$ done", "5"),
    ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
    ("\\boxed{3} and an unclosed \\boxed{4", "3"),
    ("\\boxedx{3}", None),
    ("no box at all", None),
])
def test_last_boxed_content(text, expected):
    assert rmath.last_boxed_content(text) == expected


@pytest.mark.parametrize("response, ok", [
    ("<think>reason</think>answer", True),
    ("reason</think>answer", True),  # <think> prefilled by the prompt
    ("<think>reason</think>", False),  # nothing after </think>
    ("<think> </think>answer", False),  # empty thought
    ("<think>a</think>b</think>c", False),  # two </think>
    ("<think>a<think>b</think>c", False),  # two <think>
    ("</think>a<think>b", False),  # <think> after </think>
    ("just an answer \\boxed{1}", False),
])
def test_think_format(response, ok):
    assert rmath.check_think_format(response) is ok


def test_answer_taken_after_last_think_close():
    # the box inside the thought is the wrong one; the answer section has the right one
    response = "<think>maybe \\boxed{3}</think>Final: \\boxed{4}"
    assert rmath.compute_score(response, "4") == 1.0
    assert rmath.compute_score(response, "3") == 0.0
    # a box only inside the thought does not count once </think> is there
    assert rmath.compute_score("<think>\\boxed{3}</think>no idea", "3") == 0.0


def test_unboxed_answer_falls_back_to_math_verify_extraction():
    assert rmath.compute_score("The answer is $\\frac{1}{2}$.", "\\frac12") == 1.0
    assert rmath.compute_score("The answer is 0.5", "\\frac{1}{2}") == 1.0
    assert rmath.compute_score("I give up.", "\\frac{1}{2}") == 0.0
    out = rmath.compute_score_dict("nothing", "2")
    assert out == {"score": 0.0, "acc": 0.0, "pred": "", "format": False}


def test_require_think_format_zeroes_unformatted_correct_answers():
    good = "<think>work</think>\\boxed{12}"
    bare = "\\boxed{12}"
    assert rmath.compute_score(bare, "12") == 1.0
    assert rmath.compute_score(bare, "12", require_think_format=True) == 0.0
    assert rmath.compute_score(good, "12", require_think_format=True) == 1.0
    out = rmath.compute_score_dict(bare, "12", require_think_format=True)
    assert out["format"] is False and out["pred"] == "12" and out["acc"] == 0.0


def _random_integer(rng) -> str:
    digits = rng.choice([1, 2, 3, 9, 15, 20])
    text = str(rng.randrange(10**digits))
    if rng.random() < 0.2:
        text = "0" * rng.randint(1, 3) + text
    return ("-" if rng.random() < 0.3 else "") + text


def test_boxed_integers_get_math_verify_s_verdict_without_calling_it(monkeypatch):
    rng = random.Random(0)
    pairs = [("-0", "0"), ("007", "7"), (" 7 ", "7"), ("12345678901234567890", "12345678901234567891")]
    for _ in range(300):
        gold = _random_integer(rng)
        pred = rng.choice([gold, str(int(gold)), " " + gold, _random_integer(rng)])
        pairs.append((pred, gold))
    verdicts = [rmath.grade("$" + p + "$", g)[0] for p, g in pairs]  # math-verify itself
    assert any(verdicts) and not all(verdicts)
    monkeypatch.setattr(rmath, "grade", lambda *a: pytest.fail(f"math-verify called for integers {a}"))
    for (pred, gold), verdict in zip(pairs, verdicts, strict=True):
        out = rmath.compute_score_dict(f"so \\boxed{{{pred}}}", gold)
        assert (out["score"] == 1.0) == verdict and out["pred"] == pred.strip(), (pred, gold)


@pytest.mark.parametrize("boxed, gold", [("7.0", "7"), ("+7", "7"), ("1,000", "1000"), ("\\frac{14}{2}", "7"),
                                         ("7", "7.0"), ("٧", "7"), ("7" * 101, "7" * 101)])
def test_anything_but_two_plain_integers_goes_to_math_verify(monkeypatch, boxed, gold):
    seen = []
    monkeypatch.setattr(rmath, "grade", lambda pred, truth: seen.append((pred, truth)) or (True, pred))
    assert rmath.compute_score(f"\\boxed{{{boxed}}}", gold) == 1.0
    assert seen == [("$" + boxed + "$", gold)]


def test_gold_first_order_and_equivalences():
    assert rmath.compute_score("\\boxed{\\dfrac{\\sqrt{2}}{2}}", "\\frac{1}{\\sqrt{2}}") == 1.0
    assert rmath.compute_score("\\boxed{(1,2)}", "(1, 2)") == 1.0
    assert rmath.compute_score("\\boxed{(2,1)}", "(1, 2)") == 0.0
    assert rmath.compute_score("\\boxed{10\\%}", "10") == 1.0


def test_bad_input_raises_clearly():
    with pytest.raises(ValueError, match="ground truth"):
        rmath.compute_score("\\boxed{1}", "")
    with pytest.raises(TypeError, match="solution_str"):
        rmath.compute_score(None, "1")


def test_scorer_works_off_the_main_thread():
    # math-verify's own signal.alarm timeouts would fail here; ours are disabled
    results = []
    thread = threading.Thread(target=lambda: results.append(
        rmath.compute_score("<think>t</think>\\boxed{\\frac{3}{4}}", "0.75")))
    thread.start()
    thread.join(30)
    assert results == [1.0]


# ---------------------------------------------------------------------------------- registry


@pytest.fixture
def clean_registry():
    state = registry.snapshot()
    yield
    registry.restore(state)


def test_every_relift_validation_source_is_math(shared_data):
    df = pd.read_parquet(shared_data / "relift" / "valid.parquet")
    sources = set(df["data_source"])
    assert sources == {"aime", "aime25", "amc", "math", "olympiad_bench"}
    for source in sources:
        assert get_reward_fn(source) is registry._math_scorer
    row = df[df["data_source"] == "amc"].iloc[0]
    gt = row["reward_model"]["ground_truth"]  # "142.0": a float-looking integer
    out = compute_score("amc", f"<think>x</think>\\boxed{{{gt.split('.')[0]}}}", gt)
    assert out["score"] == 1.0


@pytest.mark.parametrize("source", ["lighteval/MATH", "DigitalLearningGmbH/MATH-lighteval",
                                    "openai/gsm8k", "HuggingFaceH4/MATH-500", "deepscaler",
                                    "OpenR1-Math-220k", "numina_amc_aime", "numina_olympiads",
                                    "minerva", "math500", "aime2025"])
def test_default_math_sources(source):
    assert get_reward_fn(source) is registry._math_scorer
    assert compute_score(source, "\\boxed{72}", "72")["score"] == 1.0


def test_kk_source_dispatches_to_kk_scorer():
    gt = {"solution_text_format": "(1) Ann is a knight\n(2) Bob is a knave", "statements": "()"}
    response = "x</think><answer>(1) Ann is a knight\n(2) Bob is a knave</answer>"
    assert compute_score("kk_logic", response, gt)["score"] == 3.0
    # extra_info can switch off the prefilled-<think> allowance
    assert compute_score("kk_logic", response, gt, {"think_prefilled": False})["score"] == -3.0


def test_unknown_source_error_lists_known_and_how_to_add():
    with pytest.raises(KeyError) as info:
        compute_score("my_new_benchmark", "\\boxed{1}", "1")
    msg = str(info.value)
    assert "my_new_benchmark" in msg and "kk_logic" in msg and "olympiad_bench" in msg
    assert "register_reward" in msg and "custom_reward_function" in msg


def test_register_reward_exact_pattern_and_override(clean_registry):
    @register_reward("toy", "toy_*")
    def toy(solution_str, ground_truth, extra_info=None, **options):
        return float(solution_str == ground_truth) + options.get("bonus", 0.0)

    assert compute_score("toy", "a", "a") == 1.0
    assert compute_score("toy_v2", "a", "b", None, bonus=0.5) == 0.5
    assert "toy" in known_data_sources() and "toy_*" in known_data_sources()

    with pytest.raises(ValueError, match="already registered"):
        register_reward("math")(toy)
    register_reward("math", override=True)(toy)
    assert compute_score("math", "x", "x") == 1.0
    with pytest.raises(ValueError, match="non-empty"):
        register_reward()


def test_register_reward_pattern_newest_wins(clean_registry):
    @register_reward("numina_special*")
    def special(solution_str, ground_truth, extra_info=None, **options):
        return 42.0

    assert compute_score("numina_special_set", "", "") == 42.0
    assert get_reward_fn("numina_cn_k12") is registry._math_scorer


def test_load_custom_reward_fn_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        registry.load_custom_reward_fn(tmp_path / "missing.py", "fn")
    path = tmp_path / "my_reward.py"
    path.write_text("def score_a(data_source, s, gt, extra_info=None):\n    return 1.0\n"
                    "NOT_CALLABLE = 3\n")
    with pytest.raises(AttributeError, match="score_a"):
        registry.load_custom_reward_fn(path, "score_b")
    with pytest.raises(TypeError, match="not callable"):
        registry.load_custom_reward_fn(path, "NOT_CALLABLE")
    fn = registry.load_custom_reward_fn(path, "score_a")
    assert fn("any", "x", "y") == 1.0
    assert registry.load_custom_reward_fn(str(path), "score_a") is fn
