"""Every SFT / pair layout a user brings is read so that only the final assistant turn carries loss.

Layouts (issue 12, REFERENCE.md section 4): (a) prompt + strings, (b) prompt + assistant message
lists, (c) conversations without a prompt column (REDI's pair files, TRL's conversational layout;
SFT ``messages``). Expected token positions come from byte counts of hand-written ChatML: the tiny
tokenizer maps one byte to one token and each ChatML marker to one token.
"""

from __future__ import annotations

import pandas as pd
import pytest

from relift.data import PairDataset, SFTDataset
from relift.data.preview import preview_lines
from relift.models.tiny import build_tiny_tokenizer

L = 96
Q = "What is 6*7?"
GOOD, BAD = "6*7=42 \\boxed{42}", "6*7=41 \\boxed{41}"
USER = {"role": "user", "content": Q}


@pytest.fixture(scope="module")
def tok():
    return build_tiny_tokenizer()


def n_tok(text: str) -> int:
    return len(text.encode()) - text.count("<|im_start|>") * 11 - text.count("<|im_end|>") * 9


PROMPT = f"<|im_start|>user\n{Q}<|im_end|>\n<|im_start|>assistant\n"


def assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def expect_side(tok, item, prefix: str, completion: str) -> None:
    """Loss exactly on completion + '<|im_end|>' + newline + EOS, nothing on the prompt."""
    P = n_tok(PROMPT)
    trained = completion + "<|im_end|>\n<|im_end|>"  # template end-of-turn, then EOS (eos = <|im_end|>)
    R = n_tok(trained)
    assert item[f"{prefix}loss_mask"].tolist() == [0] * P + [1] * R + [0] * (L - P - R)
    ids = item[f"{prefix}input_ids"]
    assert tok.decode(ids[:P]) == PROMPT
    assert tok.decode(ids[item[f"{prefix}loss_mask"].bool()]) == trained
    # the last three trained tokens: end-of-turn marker, newline, EOS
    assert ids[P + R - 3:P + R].tolist() == [tok.convert_tokens_to_ids("<|im_end|>"), ord("\n"), tok.eos_token_id]


@pytest.mark.parametrize("layout", ["a_strings", "b_assistant_lists", "c_conversations", "prompt_and_full_conv"])
def test_pair_layouts_train_only_the_final_assistant_turn(tmp_path, tok, layout):
    if layout == "a_strings":
        cols = {"prompt": [Q], "chosen": [GOOD], "rejected": [BAD]}
    elif layout == "b_assistant_lists":
        cols = {"prompt": [[USER]], "chosen": [assistant(GOOD)], "rejected": [assistant(BAD)]}
    elif layout == "c_conversations":  # REDI's own files: no prompt column
        cols = {"chosen": [[USER, *assistant(GOOD)]], "rejected": [[USER, *assistant(BAD)]]}
    else:  # a prompt column AND full conversations that repeat it
        cols = {"prompt": [[USER]], "chosen": [[USER, *assistant(GOOD)]], "rejected": [[USER, *assistant(BAD)]]}
    path = tmp_path / "pairs.parquet"
    pd.DataFrame(cols).to_parquet(path)
    ds = PairDataset(path, tok, max_length=L)
    item = ds[0]
    expect_side(tok, item, "chosen_", GOOD)
    expect_side(tok, item, "rejected_", BAD)


def test_pair_conversations_with_different_prompts_is_an_error(tmp_path, tok):
    other = {"role": "user", "content": "What is 6*8?"}
    path = tmp_path / "bad.parquet"
    pd.DataFrame({"chosen": [[USER, *assistant(GOOD)], [USER, *assistant(GOOD)]],
                  "rejected": [[USER, *assistant(BAD)], [other, *assistant(BAD)]]}).to_parquet(path)
    with pytest.raises(ValueError, match=r"bad\.parquet row 1: the prompt turns of 'chosen' and 'rejected' differ"):
        PairDataset(path, tok, max_length=L)


def test_completion_with_foreign_user_turn_is_an_error(tmp_path, tok):
    path = tmp_path / "mix.parquet"
    pd.DataFrame({"prompt": [[USER]], "chosen": [[{"role": "user", "content": "hi"}, *assistant(GOOD)]],
                  "rejected": [assistant(BAD)]}).to_parquet(path)
    with pytest.raises(ValueError, match=r"mix\.parquet row 0: column 'chosen' holds turns .* differ from the prompt"):
        PairDataset(path, tok, max_length=L)
    pd.DataFrame({"chosen": [[USER]], "rejected": [[USER]]}).to_parquet(path)
    with pytest.raises(ValueError, match=r"row 0: column 'chosen' must end with an assistant message"):
        PairDataset(path, tok, max_length=L)


@pytest.mark.parametrize("layout", ["a_strings", "b_assistant_lists", "messages", "target_conversation"])
def test_sft_layouts_train_only_the_final_assistant_turn(tmp_path, tok, layout):
    if layout == "a_strings":
        cols = {"prompt": [Q], "target": [GOOD]}
    elif layout == "b_assistant_lists":
        cols = {"prompt": [[USER]], "target": [assistant(GOOD)]}
    elif layout == "messages":
        cols = {"messages": [[USER, *assistant(GOOD)]]}
    else:
        cols = {"target": [[USER, *assistant(GOOD)]]}
    path = tmp_path / "sft.parquet"
    pd.DataFrame(cols).to_parquet(path)
    item = SFTDataset(path, tok, max_length=L)[0]
    expect_side(tok, item, "", GOOD)


def test_sft_without_usable_columns_names_them(tmp_path, tok):
    path = tmp_path / "x.parquet"
    pd.DataFrame({"question": [Q]}).to_parquet(path)
    with pytest.raises(KeyError, match=r"SFT dataset: .*x\.parquet.* need columns \['prompt', 'target'\].*'messages'"):
        SFTDataset(path, tok, max_length=L)


def test_no_template_keeps_plain_text_and_appends_eos(tmp_path, tok):
    path = tmp_path / "plain.parquet"
    pd.DataFrame({"prompt": ["Q: 1+1\nA:"], "target": [" 2"]}).to_parquet(path)
    item = SFTDataset(path, tok, max_length=32, apply_chat_template=False)[0]
    ids = item["input_ids"]
    assert tok.decode(ids[item["attention_mask"].bool()]) == "Q: 1+1\nA: 2<|im_end|>"
    assert tok.decode(ids[item["loss_mask"].bool()]) == " 2<|im_end|>"


def test_preview_shows_prompt_and_exactly_the_trained_tokens(tmp_path, tok):
    path = tmp_path / "pairs.parquet"
    pd.DataFrame({"chosen": [[USER, *assistant(GOOD)]], "rejected": [[USER, *assistant(BAD)]]}).to_parquet(path)
    lines = preview_lines(PairDataset(path, tok, max_length=L)[0], tok)
    esc = PROMPT.replace("\n", "\\n")
    assert lines == [f"[chosen] prompt: {esc}",
                     f"[chosen] completion (trained): {GOOD}<|im_end|>\\n<|im_end|>",
                     f"[rejected] prompt: {esc}",
                     f"[rejected] completion (trained): {BAD}<|im_end|>\\n<|im_end|>"]
