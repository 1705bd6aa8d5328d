"""Prompt templates for knights-and-knaves rows (the text a model sees before it answers).

* ``instruct``: the Qwen ChatML prompt of Logic-RL's released parquet (``data/kk/instruct/*``,
  produced by its ``examples/data_preprocess/kk.py --template_type qwen-instruct``): system prompt
  asking for ``<think> ... </think><answer> ... </answer>``, the quiz as the user turn, and the
  assistant turn opened with a prefilled ``<think>``. Already templated: relift sends it as is.
* ``base``: Logic-RL's ``base`` template for base models ("The User asks a question ...
  User:{quiz}\\nAssistant: <think>").
* ``compact``: relift's short ChatML prompt for tiny byte-level models (user turn = the quiz,
  assistant turn opened with ``<think>``), not the seed's; used by the CPU pipeline of docs/kk.md.

All three end with an opened ``<think>``, which the reward path counts as part of the response
(see :mod:`relift.rewards.prefill`).
"""

from __future__ import annotations

__all__ = ["TEMPLATES", "make_prompt"]

_INSTRUCT_SYSTEM = (
    "You are a helpful assistant. The assistant first thinks about the reasoning process in the mind and "
    "then provides the user with the answer. The reasoning process and answer are enclosed within <think> "
    "</think> and<answer> </answer> tags, respectively, i.e., <think> reasoning process here </think><answer> "
    "answer here </answer>.  Now the user asks you to solve a logical reasoning problem. After thinking, when "
    "you finally reach a conclusion, clearly state the identity of each character within <answer> </answer> "
    "tags. i.e., <answer> (1) Zoey is a knight\n(2) ... </answer>.\n")
_BASE_HEAD = (
    "The User asks a question, and the Assistant solves it. The Assistant first thinks about the reasoning "
    "process in the mind and then provides the User with the final answer. The reasoning process and answer "
    "are enclosed within <think> </think> and<answer> </answer> tags, respectively, i.e., <think> reasoning "
    "process here </think><answer> answer here </answer>. Now the User asks a logical reasoning problem. After "
    "careful thinking, when the assistant reaches a final conclusion, the identity of each character should be "
    "clearly stated within <answer> </answer> tags, i.e., <answer> (1) Zoey is a knight\n(2) Oliver is a "
    "knight </answer>.\n\n")

TEMPLATES: dict[str, str] = {
    "instruct": ("<|im_start|>system\n" + _INSTRUCT_SYSTEM.replace("{", "{{").replace("}", "}}")
                 + "<|im_end|>\n<|im_start|>user\n{quiz}\n<|im_end|>\n<|im_start|>assistant\n<think>"),
    "base": _BASE_HEAD.replace("{", "{{").replace("}", "}}") + "User:{quiz}\nAssistant: <think>",
    "compact": "<|im_start|>user\n{quiz}<|im_end|>\n<|im_start|>assistant\n<think>",
}


def make_prompt(quiz: str, template: str = "instruct") -> str:
    """The prompt string for ``quiz`` under one of :data:`TEMPLATES`."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown K&K prompt template {template!r}; choose one of {sorted(TEMPLATES)}")
    return TEMPLATES[template].format(quiz=quiz)
