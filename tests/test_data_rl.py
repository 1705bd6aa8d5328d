"""RL prompt dataset over the shared parquet files, with the tiny byte-level tokenizer.

Expected token counts are computed independently of the dataset: the tiny tokenizer maps every
UTF-8 byte to one token, except the seven added tokens, which are one token each.
"""

from __future__ import annotations

import logging
import unicodedata

import numpy as np
import pandas as pd
import pytest
import torch

from relift.data import RLDataset, collate_to_dataproto, make_dataloader
from relift.models.tiny import REASONING_TOKENS, SPECIAL_TOKENS, build_tiny_tokenizer

ADDED = SPECIAL_TOKENS + REASONING_TOKENS


def chatml(messages) -> str:
    """The tiny tokenizer's chat template, written out by hand."""
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return text + "<|im_start|>assistant\n"


def n_tokens(text: str) -> int:
    text = unicodedata.normalize("NFC", text)
    return len(text.encode("utf-8")) - sum(text.count(t) * (len(t.encode()) - 1) for t in ADDED)


@pytest.fixture(scope="module")
def tok():
    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def valid_path(shared_data):
    return shared_data / "relift" / "valid.parquet"


@pytest.fixture(scope="module")
def valid_df(valid_path):
    return pd.read_parquet(valid_path)


@pytest.fixture(scope="module")
def valid_lengths(valid_df):
    return np.array([n_tokens(chatml(list(p))) for p in valid_df["prompt"]])


@pytest.fixture(scope="module")
def valid_ds(valid_path, tok, valid_lengths):
    return RLDataset(valid_path, tok, {"max_prompt_length": int(valid_lengths.max()), "train_batch_size": 8})


def test_left_padding_and_decoded_prompt(valid_ds, valid_df, valid_lengths, tok):
    assert len(valid_ds) == len(valid_df) == 1987
    P = int(valid_lengths.max())
    for i in (0, 241, 1000, int(valid_lengths.argmax()), 1986):
        item = valid_ds[i]
        n = int(valid_lengths[i])
        ids, mask, pos = item["input_ids"], item["attention_mask"], item["position_ids"]
        assert ids.shape == mask.shape == pos.shape == (P,)
        assert ids.dtype == torch.long
        assert mask.tolist() == [0] * (P - n) + [1] * n
        assert (ids[: P - n] == tok.pad_token_id).all()
        assert pos.tolist() == [0] * (P - n) + list(range(n))
        messages = list(valid_df["prompt"][i])
        assert tok.decode(ids[mask.bool()]) == unicodedata.normalize("NFC", chatml(messages))
        assert item["raw_prompt"] == [dict(m) for m in messages]
        assert item["data_source"] == valid_df["data_source"][i]
        assert item["reward_model"] == {"ground_truth": valid_df["reward_model"][i]["ground_truth"], "style": "rule"}
        assert item["extra_info"]["index"] == valid_df["extra_info"][i]["index"] == item["index"]
        assert "tgt_input_ids" not in item


def test_error_names_the_row(valid_path, tok, valid_lengths):
    limit = int(np.sort(valid_lengths)[-4])  # three prompts are longer than this
    over = np.flatnonzero(valid_lengths > limit)
    assert len(over) == 3
    with pytest.raises(ValueError) as err:
        RLDataset(valid_path, tok, max_prompt_length=limit, truncation="error")
    msg = str(err.value)
    assert f"valid.parquet row {over[0]}:" in msg
    assert f"is {valid_lengths[over[0]]} tokens, over the limit of {limit}" in msg
    assert "(3 of 1987 rows are over)" in msg


def test_filter_drops_overlong_rows_with_a_count(valid_path, tok, valid_lengths, caplog):
    limit = int(np.sort(valid_lengths)[-4])
    with caplog.at_level(logging.WARNING, logger="relift.data.rl_dataset"):
        ds = RLDataset(valid_path, tok, max_prompt_length=limit, truncation="error", filter_overlong_prompts=True)
    assert ds.num_filtered == 3 and len(ds) == 1984
    assert "dropped 3 of 1987 prompts" in caplog.text
    kept = {int(ds.source_row(i).rsplit(" ", 1)[1]) for i in range(len(ds))}
    assert kept == set(np.flatnonzero(valid_lengths <= limit).tolist())
    assert int(ds[len(ds) - 1]["attention_mask"].sum()) == valid_lengths[1986]


@pytest.mark.parametrize("side", ["left", "right"])
def test_left_and_right_truncation(tmp_path, valid_df, tok, side):
    path = tmp_path / "slice.parquet"
    valid_df.iloc[:6].to_parquet(path)
    limit = 300
    ds = RLDataset(path, tok, max_prompt_length=limit, truncation=side)
    assert len(ds) == 6
    for i in range(6):
        text = chatml(list(valid_df["prompt"][i]))
        full = tok(text, add_special_tokens=False)["input_ids"]
        assert len(full) > limit
        item = ds[i]
        assert item["attention_mask"].sum() == limit
        expected = full[-limit:] if side == "left" else full[:limit]
        assert item["input_ids"].tolist() == expected
    if side == "left":  # the end of the prompt, where the generation prompt is, survives
        assert tok.decode(ds[0]["input_ids"]).endswith("<|im_end|>\n<|im_start|>assistant\n")


def test_many_files_logic_rl(shared_data, tok):
    f1 = shared_data / "kk_logic_rl" / "3ppl" / "train.parquet"
    f2 = shared_data / "kk_logic_rl" / "4ppl" / "test.parquet"
    df2 = pd.read_parquet(f2)
    ds = RLDataset([str(f1), str(f2)], tok, max_prompt_length=1400)
    assert len(ds) == 900 + 100
    assert ds.source_row(900) == f"{f2} row 0" and ds.source_row(899) == f"{f1} row 899"
    item = ds[900]
    assert item["data_source"] == "kk_logic"
    assert item["reward_model"]["ground_truth"]["solution_text_format"] == \
        df2["reward_model"][0]["ground_truth"]["solution_text_format"]
    # the Logic-RL content is already a ChatML string: used as is, not wrapped in a second template
    content = df2["prompt"][0][0]["content"]
    assert int(item["attention_mask"].sum()) == n_tokens(content) < n_tokens(chatml(list(df2["prompt"][0])))
    valid = item["input_ids"][item["attention_mask"].bool()]
    assert tok.decode(valid) == content
    assert int((item["input_ids"] == tok.convert_tokens_to_ids("<|im_start|>")).sum()) == 3  # system, user, assistant


def _with_targets(valid_df, path, targets):
    df = valid_df.iloc[: len(targets)].copy()
    df["target"] = targets
    df.to_parquet(path)
    return df


def test_target_is_tokenised_right_padded_with_eos(tmp_path, valid_df, tok):
    path = tmp_path / "t.parquet"
    targets = [[{"role": "assistant", "content": "<think>2+2</think><answer>4</answer>"}],
               None,
               [{"role": "assistant", "content": "x" * 100}]]
    _with_targets(valid_df, path, targets)
    ds = RLDataset(path, tok, max_prompt_length=6000, max_target_length=32)
    assert ds.has_target and ds.num_without_target == 1
    eos, pad = tok.eos_token_id, tok.pad_token_id
    a = ds[0]
    want = [259] + list(b"2+2") + [260, 261] + list(b"4") + [262, eos]  # byte ids + tag tokens + EOS
    assert a["tgt_input_ids"].tolist() == want + [pad] * (32 - len(want))
    assert a["tgt_attention_mask"].tolist() == [1] * len(want) + [0] * (32 - len(want))
    assert a["target"] == "<think>2+2</think><answer>4</answer>"  # the text, for ReLIFT's buffer
    b = ds[1]
    assert b["tgt_attention_mask"].sum() == 0 and (b["tgt_input_ids"] == pad).all()
    assert b["target"] is None
    assert ds[2]["target"] == "x" * 100  # untruncated
    c = ds[2]  # 100 tokens + EOS cut on the right: no EOS
    assert c["tgt_input_ids"].tolist() == [ord("x")] * 32 and c["tgt_attention_mask"].all()


def test_target_string_column_and_limits(tmp_path, valid_df, tok):
    path = tmp_path / "t.parquet"
    _with_targets(valid_df, path, ["short", "y" * 50])
    with pytest.raises(ValueError, match="max_target_length nor max_response_length"):
        RLDataset(path, tok, max_prompt_length=6000)
    ds = RLDataset(path, tok, {"max_prompt_length": 6000, "max_response_length": 16})  # verl key as fallback
    assert ds.max_target_length == 16
    assert ds[0]["tgt_input_ids"][:6].tolist() == list(b"short") + [tok.eos_token_id]
    with pytest.raises(ValueError, match=r"t\.parquet row 1: the target .* is 51 tokens, over the limit of 16"):
        RLDataset(path, tok, max_prompt_length=6000, max_target_length=16, target_truncation="error")
    ds = RLDataset(path, tok, max_prompt_length=6000, max_target_length=16, target_truncation="filter")
    assert len(ds) == 1 and ds.num_filtered == 1


def test_missing_prompt_column(tmp_path, valid_df, tok):
    path = tmp_path / "noprompt.parquet"
    valid_df.drop(columns=["prompt"]).iloc[:4].to_parquet(path)
    with pytest.raises(KeyError) as err:
        RLDataset(path, tok, max_prompt_length=512)
    msg = str(err.value)
    assert "['prompt'] missing" in msg and "noprompt.parquet" in msg and "reward_model" in msg


def test_mistyped_columns(tmp_path, valid_df, tok):
    df = valid_df.iloc[:3].copy()
    df["prompt"] = ["just a string", "another", "third"]
    path = tmp_path / "strprompt.parquet"
    df.to_parquet(path)
    with pytest.raises(ValueError, match=r"strprompt\.parquet row 0: column 'prompt' must be a list of chat "
                                         r"messages .* got str"):
        RLDataset(path, tok, max_prompt_length=512)

    df = valid_df.iloc[:3].copy()
    df["reward_model"] = ["7", "8", "9"]
    path = tmp_path / "badreward.parquet"
    df.to_parquet(path)
    with pytest.raises(ValueError, match=r"badreward\.parquet row 0: column 'reward_model' must be a dict"):
        RLDataset(path, tok, max_prompt_length=6000)

    df = valid_df.iloc[:3].copy()
    df["prompt"] = [[{"role": "user", "content": "hi"}], [{"role": "user"}], [{"role": "user", "content": "x"}]]
    path = tmp_path / "nocontent.parquet"
    df.to_parquet(path)
    with pytest.raises(ValueError, match=r"nocontent\.parquet row 1: column 'prompt' message 0"):
        RLDataset(path, tok, max_prompt_length=512)


def test_bad_options(valid_path, tok):
    with pytest.raises(ValueError, match="truncation must be one of"):
        RLDataset(valid_path, tok, max_prompt_length=512, truncation="middle")
    with pytest.raises(TypeError, match="no option"):
        RLDataset(valid_path, tok, max_prompt_len=512)


def test_tokenizer_without_chat_template(tmp_path, valid_df, tok):
    path = tmp_path / "s.parquet"
    valid_df.iloc[:2].to_parquet(path)
    plain = build_tiny_tokenizer()
    plain.chat_template = None
    with pytest.raises(ValueError, match="has no chat template.*apply_chat_template=false"):
        RLDataset(path, plain, max_prompt_length=6000)
    ds = RLDataset(path, plain, max_prompt_length=6000, apply_chat_template=False)
    item = ds[1]
    text = "\n".join(m["content"] for m in valid_df["prompt"][1])
    assert plain.decode(item["input_ids"][item["attention_mask"].bool()]) == unicodedata.normalize("NFC", text)


def test_loader_batches_become_a_dataproto(tmp_path, valid_df, tok):
    path = tmp_path / "s.parquet"
    math = valid_df[valid_df["data_source"] == "math"].iloc[:10]
    math.to_parquet(path)
    ds = RLDataset(path, tok, max_prompt_length=2048)
    loader = make_dataloader(ds, batch_size=4, seed=1, shuffle=True, drop_last=True)
    batches = list(loader)
    assert len(batches) == 2
    data = collate_to_dataproto([ds[i] for i in range(4)], meta_info={"n": 2})
    assert len(data) == 4 and data.batch["input_ids"].shape == (4, 2048)
    assert list(data.non_tensor_batch["data_source"]) == ["math"] * 4
    assert data.non_tensor_batch["raw_prompt"][2][0]["role"] == "system"
    b = batches[0]
    assert b["input_ids"].shape == (4, 2048) and b["reward_model"].dtype == object
    seen = [int(i) for batch in batches for i in batch["index"]]
    assert len(set(seen)) == 8 and set(seen) <= {e["index"] for e in math["extra_info"]}


def test_hydra_data_config(shared_data, tok):
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({
        "train_files": [str(shared_data / "kk_logic_rl" / "3ppl" / "test.parquet")],
        "max_prompt_length": "${oc.decode:'1300'}",
        "train_batch_size": 4,
        "unrelated": "${does.not.resolve}",  # keys the dataset does not read are never resolved
        "truncation": "filter",
    })
    ds = RLDataset(cfg.train_files, tok, cfg)
    assert len(ds) == 100 and ds.config.max_prompt_length == 1300 and ds.config.truncation == "filter"
