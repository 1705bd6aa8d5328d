"""dataset.make_think_model on the tiny checkpoint: template prefill, config fields, weights intact."""

import json
import os
import subprocess
import sys

import pytest

from dataset.make_think_model import LUFFY_16K, main, make_think_model, think_chat_template
from relift.models.tiny import CHAT_TEMPLATE, build_tiny_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "m", hidden_size=16, num_layers=1, num_heads=2,
                            num_kv_heads=1, intermediate_size=32)


def test_template_prefill_and_idempotence():
    new, changed = think_chat_template(CHAT_TEMPLATE)
    assert changed and new.startswith(CHAT_TEMPLATE)
    again, changed2 = think_chat_template(new)
    assert not changed2 and again == new


def test_make_think_model(tiny, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dst = tmp_path / "tiny-16k-think"
    out = make_think_model(tiny, dst, context_16k=True)
    tok = AutoTokenizer.from_pretrained(dst)
    msgs = [{"role": "user", "content": "hi"}]
    assert tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) == \
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n"
    # a full conversation renders as before (the prefill belongs to the generation prompt only)
    base = AutoTokenizer.from_pretrained(tiny)
    conv = msgs + [{"role": "assistant", "content": "x"}]
    assert tok.apply_chat_template(conv, tokenize=False) == base.apply_chat_template(conv, tokenize=False)
    from transformers import AutoConfig

    loaded = AutoConfig.from_pretrained(dst)  # the values transformers will actually use
    assert loaded.max_position_embeddings == 16384
    theta = loaded.rope_parameters["rope_theta"] if hasattr(loaded, "rope_parameters") else loaded.rope_theta
    assert theta == 40000.0
    assert out["config"]["rope_theta"] == (10000.0, 40000.0)
    assert LUFFY_16K == {"max_position_embeddings": 16384, "rope_theta": 40000.0}
    # weights hard-linked and identical
    weights = [p for p in os.listdir(tiny) if p.endswith(".safetensors")]
    assert weights and all(os.path.samefile(tiny / w, dst / w) for w in weights)
    m1 = AutoModelForCausalLM.from_pretrained(tiny)
    m2 = AutoModelForCausalLM.from_pretrained(dst)
    assert all((a == b).all() for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    # the source is untouched
    assert json.loads((tiny / "config.json").read_text())["rope_parameters"]["rope_theta"] == 10000.0
    assert "<think>" not in base.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)


def test_explicit_fields_and_no_config_change(tiny, tmp_path):
    make_think_model(tiny, tmp_path / "a", max_position_embeddings=2048)
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    assert cfg["max_position_embeddings"] == 2048 and cfg["rope_parameters"]["rope_theta"] == 10000.0
    out = make_think_model(tiny, tmp_path / "b", copy_weights=True)
    assert out["config"] == {} and out["files"]["linked"] == 0


def test_errors(tiny, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make_think_model(tmp_path / "missing", tmp_path / "x")
    make_think_model(tiny, tmp_path / "c")
    with pytest.raises(FileExistsError, match="--overwrite"):
        make_think_model(tiny, tmp_path / "c")
    make_think_model(tiny, tmp_path / "c", overwrite=True)
    assert main([str(tmp_path / "missing"), str(tmp_path / "y")]) == 2


def test_cli(tiny, tmp_path):
    res = subprocess.run([sys.executable, "-m", "dataset.make_think_model", str(tiny), str(tmp_path / "cli"),
                          "--context-16k"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "rope_theta: 10000.0 -> 40000.0" in res.stdout
    help_ = subprocess.run([sys.executable, "-m", "dataset.make_think_model", "--help"], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert help_.returncode == 0 and "--context-16k" in help_.stdout


def test_top_level_rope_theta_of_older_configs(tiny, tmp_path):
    """Qwen2.5 checkpoints saved by transformers 4 keep rope_theta at the top level."""
    import shutil

    old = tmp_path / "old"
    shutil.copytree(tiny, old)
    cfg = json.loads((old / "config.json").read_text())
    cfg.pop("rope_parameters")
    cfg.update(rope_theta=10000.0, max_position_embeddings=4096)
    (old / "config.json").write_text(json.dumps(cfg))
    out = make_think_model(old, tmp_path / "old-16k", context_16k=True)
    new = json.loads((tmp_path / "old-16k" / "config.json").read_text())
    assert new["rope_theta"] == 40000.0 and new["max_position_embeddings"] == 16384
    assert out["config"] == {"max_position_embeddings": (4096, 16384), "rope_theta": (10000.0, 40000.0)}
