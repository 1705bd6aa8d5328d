"""ReLIFT's reward_impl_version=3, table-driven, plus how it is selected."""

import os

import pytest

from relift.rewards import compute_score, get_reward_fn, load_custom_reward_fn
from relift.rewards import math as default_math
from relift.rewards.math_v3 import answer_segment, compute_score_dict, scored_text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (response, ground truth, think_prefilled, expected score, expected format)
CASES = [
    # 1 well formed, correct
    ("<think>2+1=3</think>The answer is \\boxed{3}.", "3", False, 1.0, True),
    # 2 well formed, wrong
    ("<think>2+1=4</think>The answer is \\boxed{4}.", "3", False, 0.0, True),
    # 3 no think tags at all, prompt did not prefill: format failure even when correct
    ("The answer is \\boxed{3}.", "3", False, 0.0, False),
    # 4 same response, prompt prefilled <think>: still no </think> -> failure
    ("The answer is \\boxed{3}.", "3", True, 0.0, False),
    # 5 prefilled prompt, response closes the thought: correct
    ("2+1=3\n</think>\n\n\\boxed{3}", "3", True, 1.0, True),
    # 6 prefilled prompt, auto-detected (no <think> of its own)
    ("2+1=3\n</think>\n\n\\boxed{3}", "3", None, 1.0, True),
    # 7 only </think>, prompt did not prefill: no <think> -> failure
    ("2+1=3</think>\\boxed{3}", "3", False, 0.0, False),
    # 8 answer only in the thinking part: the graded segment has no answer
    ("<think>so it is \\boxed{3}</think>I am done.", "3", False, 0.0, True),
    # 9 two </think>: the answer after the second one is not graded (split()[1])
    ("<think>a</think>first part<think>b</think>\\boxed{3}", "3", False, 0.0, True),
    # 10 two </think>: the answer between the first and the second one is graded
    ("<think>a</think>\\boxed{3}<think>b</think>\\boxed{7}", "3", False, 1.0, True),
    # 11 fraction vs decimal, math-verify equivalence
    ("<think>half</think>\\boxed{\\frac{1}{2}}", "0.5", False, 1.0, True),
    # 12 latex ground truth
    ("<think>x</think>$\\boxed{\\frac{3}{4}}$", "\\frac{3}{4}", False, 1.0, True),
    # 13 empty answer segment
    ("<think>thinking \\boxed{3}</think>", "3", False, 0.0, True),
    # 14 tags present but </think> before <think>: both present -> format ok, segment after first </think>
    ("</think>\\boxed{3}<think>", "3", False, 1.0, True),
    # 15 no boxed, bare number after </think> (math-verify extracts the expression)
    ("<think>compute</think>The final answer is $3$", "3", False, 1.0, True),
    # 16 response opens its own <think> although the prompt prefilled one: scored as prompt + response
    ("<think>x</think>\\boxed{3}", "3", True, 1.0, True),
    # 17 wrong answer in segment, right answer after a second </think>
    ("<think>a</think>\\boxed{5}</think>\\boxed{3}", "3", False, 0.0, True),
    # 18 integer ground truth given as int
    ("<think>x</think>\\boxed{12}", 12, False, 1.0, True),
]


@pytest.mark.parametrize("response,gt,prefilled,score,fmt", CASES, ids=[str(i + 1) for i in range(len(CASES))])
def test_v3_table(response, gt, prefilled, score, fmt):
    out = compute_score_dict(response, gt, think_prefilled=prefilled)
    assert out["score"] == score and out["acc"] == score
    assert out["format"] is fmt
    assert out["format_failure"] == (0.0 if fmt else 1.0)


def test_differs_from_default_scorer_where_expected():
    # the default scorer grades after the LAST </think>; v3 between the first and the second
    text = "<think>a</think>first part<think>b</think>\\boxed{3}"
    assert default_math.compute_score(text, "3") == 1.0
    assert compute_score_dict(text, "3", think_prefilled=False)["score"] == 0.0
    # the default scorer does not need tags; v3 does
    assert default_math.compute_score("\\boxed{3}", "3") == 1.0
    assert compute_score_dict("\\boxed{3}", "3")["score"] == 0.0


def test_helpers():
    assert scored_text("abc", True) == "<think>abc"
    assert scored_text("abc", False) == "abc"
    assert scored_text("<think>abc", None) == "<think>abc"
    assert answer_segment("<think>a</think>b</think>c") == "b"
    assert answer_segment("a</think>b") is None


def test_think_prefilled_from_extra_info():
    assert compute_score_dict("x</think>\\boxed{3}", "3", {"think_prefilled": False})["score"] == 0.0
    assert compute_score_dict("x</think>\\boxed{3}", "3", {"think_prefilled": True})["score"] == 1.0


def test_missing_ground_truth_raises():
    with pytest.raises(ValueError, match="ground truth"):
        compute_score_dict("<think>a</think>1", None)


def test_selected_by_registry_and_custom_hook():
    assert compute_score("relift_v3", "<think>a</think>b</think>\\boxed{3}", "3")["score"] == 0.0
    assert get_reward_fn("math")("<think>a</think>b</think>\\boxed{3}", "3")["score"] == 1.0  # default unchanged
    fn = load_custom_reward_fn(os.path.join(ROOT, "relift", "rewards", "math_v3.py"), "compute_score")
    assert fn("aime", "x</think>\\boxed{3}", "3", None)["score"] == 1.0
    assert fn("aime", "\\boxed{3}", "3", None)["format"] is False


def test_through_reward_pool_custom():
    from relift.rewards import RewardPool

    path = os.path.join(ROOT, "relift", "rewards", "math_v3.py")
    with RewardPool(num_workers=1, timeout=30, custom_reward_fn=(path, "compute_score")) as pool:
        res = pool.score(["math", "aime"], ["x</think>\\boxed{3}", "\\boxed{3}"], ["3", "3"])
    assert [r["score"] for r in res] == [1.0, 0.0]
    assert res[1]["format"] is False
