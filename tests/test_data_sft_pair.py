"""SFT and preference-pair datasets: the loss mask covers exactly the response (+ EOS) tokens.

The tiny tokenizer maps each byte to one token, so expected positions are computed from byte
counts of hand-written ChatML text, independently of the datasets.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from relift.data import PairDataset, SFTDataset
from relift.models.tiny import build_tiny_tokenizer


@pytest.fixture(scope="module")
def tok():
    return build_tiny_tokenizer()


def chatml_prompt(messages) -> str:
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages) + \
        "<|im_start|>assistant\n"


def n_tok(text: str) -> int:
    """Token count for ASCII text with ChatML markers (each marker is one token)."""
    return len(text.encode()) - text.count("<|im_start|>") * 11 - text.count("<|im_end|>") * 9


ROWS = [
    ([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+3?"}], "5"),
    ([{"role": "user", "content": "Name a prime."}], "Seven is prime, and so is eleven."),
    ([{"role": "user", "content": "Say nothing."}], ""),
]


@pytest.fixture()
def sft_file(tmp_path):
    path = tmp_path / "sft.parquet"
    pd.DataFrame({
        "prompt": [p for p, _ in ROWS],
        "target": [[{"role": "assistant", "content": r}] for _, r in ROWS],
        "data_source": ["toy"] * len(ROWS),
    }).to_parquet(path)
    return path


def test_sft_loss_mask_covers_exactly_the_response(sft_file, tok):
    L = 96
    ds = SFTDataset(sft_file, tok, {"max_length": L, "micro_batch_size": 4})
    assert len(ds) == 3
    for i, (messages, response) in enumerate(ROWS):
        item = ds[i]
        P = n_tok(chatml_prompt(messages))
        R = len(response.encode()) + 3  # + the template's end-of-turn "<|im_end|>\n" + EOS
        assert set(item) == {"input_ids", "attention_mask", "position_ids", "loss_mask", "index"}
        assert item["loss_mask"].tolist() == [0] * P + [1] * R + [0] * (L - P - R)
        assert item["attention_mask"].tolist() == [1] * (P + R) + [0] * (L - P - R)
        assert item["position_ids"][: P + R].tolist() == list(range(P + R))
        ids = item["input_ids"]
        assert tok.decode(ids[:P]) == chatml_prompt(messages)
        assert tok.decode(ids[item["loss_mask"].bool()]) == response + "<|im_end|>\n<|im_end|>"
        assert int(ids[P + R - 1]) == tok.eos_token_id
        assert (ids[P + R:] == tok.pad_token_id).all()


def test_sft_verl_style_string_columns(tmp_path, tok):
    path = tmp_path / "qa.parquet"
    pd.DataFrame({"question": ["1+1?", "2+2?"], "answer": ["2", "4"]}).to_parquet(path)
    ds = SFTDataset(path, tok, prompt_key="question", response_key="answer", max_length=40)
    item = ds[1]
    prompt = chatml_prompt([{"role": "user", "content": "2+2?"}])
    P = n_tok(prompt)
    assert tok.decode(item["input_ids"][:P]) == prompt
    assert item["loss_mask"].tolist() == [0] * P + [1] * 4 + [0] * (40 - P - 4)  # "4" <|im_end|> \n EOS
    raw = SFTDataset(path, tok, prompt_key="question", response_key="answer", max_length=40,
                     apply_chat_template=False)[1]
    assert raw["loss_mask"].tolist() == [0] * 4 + [1, 1] + [0] * 34  # "2+2?" is 4 tokens, no template


def test_sft_truncation_modes(sft_file, tok):
    messages, response = ROWS[1]
    P = n_tok(chatml_prompt(messages))
    R = len(response.encode()) + 3
    limit = P + R - 5
    with pytest.raises(ValueError, match=rf"sft\.parquet row 1: prompt \+ response \+ EOS is {P + R} tokens"):
        SFTDataset(sft_file, tok, max_length=limit)
    ds = SFTDataset(sft_file, tok, max_length=limit, truncation="filter")
    assert len(ds) == 2 and ds.num_filtered == 1 and ds.source_row(1).endswith("row 2")
    right = SFTDataset(sft_file, tok, max_length=limit, truncation="right")[1]
    assert right["attention_mask"].all() and right["loss_mask"].tolist() == [0] * P + [1] * (R - 5)
    # the end of the response, EOS included, is cut
    assert tok.decode(right["input_ids"][right["loss_mask"].bool()]) == response[: R - 5]
    left = SFTDataset(sft_file, tok, max_length=limit, truncation="left")[1]
    assert left["loss_mask"].tolist() == [0] * (P - 5) + [1] * R
    assert int(left["input_ids"][-1]) == tok.eos_token_id


def test_sft_missing_and_mistyped_response(tmp_path, tok):
    path = tmp_path / "bad.parquet"
    pd.DataFrame({"prompt": ["a", "b"], "answer": ["x", "y"]}).to_parquet(path)
    with pytest.raises(KeyError,
                       match=r"need columns \['prompt', 'target'\].*available columns: \['prompt', 'answer'\]"):
        SFTDataset(path, tok, max_length=64)
    pd.DataFrame({"prompt": ["a", "b"], "target": [1.5, 2.5]}).to_parquet(path)
    with pytest.raises(ValueError, match=r"bad\.parquet row 0: column 'target' must be a string or a list of "
                                         r"messages, got float"):
        SFTDataset(path, tok, max_length=64)


@pytest.fixture()
def pair_file(tmp_path):
    path = tmp_path / "pairs.parquet"
    pd.DataFrame({
        "prompt": [[{"role": "user", "content": "What is 6*7?"}], [{"role": "user", "content": "Is 9 prime?"}]],
        "chosen": [[{"role": "assistant", "content": "<answer>42</answer>"}],
                   [{"role": "assistant", "content": "No, 9 = 3*3."}]],
        "rejected": ["<answer>41</answer>", "Yes."],
    }).to_parquet(path)
    return path


def test_pair_dataset_shapes_and_masks(pair_file, tok):
    L = 64
    ds = PairDataset(pair_file, tok, max_length=L)
    assert len(ds) == 2
    item = ds[1]
    expected_keys = {f"{s}_{k}" for s in ("chosen", "rejected")
                     for k in ("input_ids", "attention_mask", "position_ids", "loss_mask")}
    assert set(item) == expected_keys | {"index"}
    assert all(item[k].shape == (L,) and item[k].dtype == torch.long for k in expected_keys)
    prompt = chatml_prompt([{"role": "user", "content": "Is 9 prime?"}])
    P = n_tok(prompt)
    for side, text in (("chosen", "No, 9 = 3*3."), ("rejected", "Yes.")):
        R = len(text.encode()) + 3
        assert item[f"{side}_loss_mask"].tolist() == [0] * P + [1] * R + [0] * (L - P - R)
        assert tok.decode(item[f"{side}_input_ids"][:P]) == prompt
        trained = item[f"{side}_input_ids"][item[f"{side}_loss_mask"].bool()]
        assert tok.decode(trained) == text + "<|im_end|>\n<|im_end|>"
    first = ds[0]
    chosen = first["chosen_input_ids"][first["chosen_loss_mask"].bool()].tolist()
    assert chosen == [261] + list(b"42") + [262, tok.convert_tokens_to_ids("<|im_end|>"), ord("\n"), tok.eos_token_id]
    # chosen and rejected stack into one forward batch
    batch = torch.stack([first["chosen_input_ids"], first["rejected_input_ids"]])
    assert batch.shape == (2, L)


def test_pair_filter_and_error(pair_file, tok):
    P0 = n_tok(chatml_prompt([{"role": "user", "content": "What is 6*7?"}]))
    limit = P0 + 10  # row 0: chosen is 5 tokens + EOS and fits; rejected "<answer>41</answer>" too
    P1 = n_tok(chatml_prompt([{"role": "user", "content": "Is 9 prime?"}]))
    assert P1 + len("No, 9 = 3*3.") + 1 > limit
    with pytest.raises(ValueError, match=r"pairs\.parquet row 1: prompt \+ chosen \+ EOS"):
        PairDataset(pair_file, tok, max_length=limit)
    ds = PairDataset(pair_file, tok, max_length=limit, truncation="filter")
    assert len(ds) == 1 and ds.num_filtered == 1 and ds[0]["index"] == 0


def test_pair_missing_column(tmp_path, tok):
    path = tmp_path / "p.parquet"
    pd.DataFrame({"prompt": ["q"], "chosen": ["a"]}).to_parquet(path)
    with pytest.raises(KeyError, match=r"preference-pair dataset: .* need columns \['prompt', 'chosen', 'rejected'\]"):
        PairDataset(path, tok, max_length=32)
    ds = PairDataset(path, tok, max_length=32, rejected_key="chosen")  # column names are configurable
    item = ds[0]
    assert torch.equal(item["chosen_input_ids"], item["rejected_input_ids"])
    prompt = chatml_prompt([{"role": "user", "content": "q"}])  # a string prompt is one user turn
    whole = item["chosen_input_ids"][item["chosen_attention_mask"].bool()]
    assert tok.decode(whole) == prompt + "a<|im_end|>\n<|im_end|>"
