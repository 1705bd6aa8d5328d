"""The tiny-model kit and the model/tokenizer loaders."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from relift.models.loading import load_causal_lm, load_tokenizer, looks_like_hub_id, resolve_model_path
from relift.models.tiny import build_tiny_model, build_tiny_tokenizer, main, make_tiny_model


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=3)


def test_round_trip_through_auto_classes(tiny_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir).eval()
    fresh = make_tiny_model(build_tiny_tokenizer(), seed=3)
    ids = tok("<|im_start|>user\n12+34=<|im_end|>\n", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        loaded_logits = model(ids).logits
        fresh_logits = fresh(ids).logits
    assert loaded_logits.shape == (1, ids.shape[1], len(tok))
    assert torch.equal(loaded_logits, fresh_logits)
    other = make_tiny_model(build_tiny_tokenizer(), seed=4)
    with torch.no_grad():
        assert not torch.allclose(other(ids).logits, fresh_logits)
    # tied embeddings survive the round trip
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


def test_config_matches_tokenizer(tiny_dir):
    tok = load_tokenizer(tiny_dir)
    config = json.loads((tiny_dir / "config.json").read_text())
    gen = json.loads((tiny_dir / "generation_config.json").read_text())
    assert config["vocab_size"] == len(tok) < 512
    assert config["eos_token_id"] == tok.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")
    assert config["pad_token_id"] == tok.pad_token_id == tok.convert_tokens_to_ids("<|endoftext|>")
    assert tok.eos_token_id in gen["eos_token_id"] and gen["pad_token_id"] == tok.pad_token_id
    assert config["model_type"] == "qwen2" and config["tie_word_embeddings"] is True
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"],
            config["num_key_value_heads"], config["intermediate_size"]) == (64, 2, 4, 2, 128)


def test_tokenizer_chat_template_and_tokens(tiny_dir):
    tok = load_tokenizer(tiny_dir)
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "Add 7 and 15."}]
    text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nAdd 7 and 15.<|im_end|>\n<|im_start|>assistant\n"
    no_gen = tok.apply_chat_template(messages, tokenize=False)
    assert no_gen + "<|im_start|>assistant\n" == text
    # one token per digit
    assert tok("2024", add_special_tokens=False)["input_ids"] == [ord(c) for c in "2024"]
    for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>", "<answer>", "</answer>"):
        assert len(tok(t, add_special_tokens=False)["input_ids"]) == 1, t
    response = "<think>7+15</think><answer>22</answer><|im_end|>"
    ids = tok(response, add_special_tokens=False)["input_ids"]
    assert len(ids) == 1 + 4 + 1 + 1 + 2 + 1 + 1
    # reasoning tags survive skip_special_tokens (the reward functions need them), the EOS does not
    assert tok.decode(ids, skip_special_tokens=True) == "<think>7+15</think><answer>22</answer>"
    sample = "Ünïcode ∑ 日本 and  spaces\n\ttab"
    assert tok.decode(tok(sample, add_special_tokens=False)["input_ids"]) == sample


def test_build_leaves_global_rng_alone(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    make_tiny_model(build_tiny_tokenizer(), hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1,
                    intermediate_size=32, seed=9)
    assert torch.equal(torch.rand(3), expected)


def test_cli_sizes(tmp_path, capsys):
    out = tmp_path / "cli"
    main(["--out", str(out), "--hidden-size", "32", "--num-layers", "1", "--num-heads", "2", "--num-kv-heads", "1",
          "--intermediate-size", "48", "--max-position-embeddings", "256", "--no-tie-word-embeddings", "--seed", "1"])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["path"] == str(out) and printed["hidden_size"] == 32
    model = load_causal_lm(out, dtype="bf16")
    assert model.dtype == torch.bfloat16 and not model.training
    cfg = model.config
    shape = (cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size, cfg.max_position_embeddings)
    assert shape == (32, 1, 48, 256)
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
    with pytest.raises(ValueError, match="divisible"):
        make_tiny_model(build_tiny_tokenizer(), hidden_size=30, num_heads=4)


def test_tiny_model_learns(tiny_dir):
    torch.manual_seed(0)
    model = load_causal_lm(tiny_dir).train()
    tok = load_tokenizer(tiny_dir)
    ids = tok("<|im_start|>user\n3+4=<|im_end|>\n<|im_start|>assistant\n7<|im_end|>",
              return_tensors="pt")["input_ids"]
    opt = torch.optim.AdamW(model.parameters(), lr=2e-2)
    losses = []
    for _ in range(10):
        loss = model(ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 5.0  # about log(263) at random init
    assert losses[-1] < 0.5 * losses[0]


def test_loading_errors_and_pad_fallback(tmp_path, caplog):
    with pytest.raises(FileNotFoundError, match="does not exist locally and is not a hub id"):
        load_causal_lm(tmp_path / "missing" / "model")
    with pytest.raises(FileNotFoundError, match="does not exist locally"):
        load_tokenizer("./nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no model config files"):
        load_causal_lm(tmp_path / "empty")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(NotADirectoryError):
        load_tokenizer(tmp_path / "afile")
    with pytest.raises(ValueError, match="unknown dtype"):
        load_causal_lm(tmp_path / "empty", dtype="float8")
    assert looks_like_hub_id("Qwen/Qwen2.5-Math-1.5B") and looks_like_hub_id("gpt2")
    assert not looks_like_hub_id("/abs/path") and not looks_like_hub_id("a/b/c") and not looks_like_hub_id("../x")
    assert resolve_model_path("Qwen/Qwen2.5-7B") == "Qwen/Qwen2.5-7B"

    nopad = build_tiny_tokenizer()
    nopad.pad_token = None
    nopad.save_pretrained(tmp_path / "nopad")
    with caplog.at_level(logging.WARNING, logger="relift.models.loading"):
        tok = load_tokenizer(tmp_path / "nopad")
    assert tok.pad_token == "<|im_end|>" and tok.pad_token_id == tok.eos_token_id
    assert "no pad token" in caplog.text
