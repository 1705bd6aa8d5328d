"""A tiny Qwen2-architecture causal LM with a locally built tokenizer, for tests and the CPU quickstart.

Nothing is downloaded: the tokenizer is built with the ``tokenizers`` library and the weights are
random (seeded). The result is an ordinary HF checkpoint folder, so every code path that loads
``AutoModelForCausalLM`` / ``AutoTokenizer`` from a path works on it unchanged.

Tokenizer: a byte-level ``Qwen2Tokenizer`` with no merges, so every UTF-8 byte is one token
(token id == byte value, ids 0..255), text round-trips exactly (up to NFC normalisation), and every
digit is its own token (handy for arithmetic toy tasks). Then come Qwen-style special tokens
``<|endoftext|>`` (pad, bos), ``<|im_start|>``,
``<|im_end|>`` (eos) and the reasoning tags ``<think>``, ``</think>``, ``<answer>``, ``</answer>``
as single, non-special tokens (so ``decode(..., skip_special_tokens=True)`` keeps them for the
reward functions). The chat template is ChatML without a default system prompt.

CLI: ``python -m relift.models.tiny --out DIR [--hidden-size 64 --num-layers 2 ...]``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

__all__ = [
    "CHAT_TEMPLATE",
    "SPECIAL_TOKENS",
    "REASONING_TOKENS",
    "build_tiny_tokenizer",
    "make_tiny_model",
    "build_tiny_model",
    "main",
]

logger = logging.getLogger(__name__)

PAD_TOKEN = "<|endoftext|>"
EOS_TOKEN = "<|im_end|>"
SPECIAL_TOKENS = (PAD_TOKEN, "<|im_start|>", EOS_TOKEN)
REASONING_TOKENS = ("<think>", "</think>", "<answer>", "</answer>")

# ChatML, as Qwen2.5 uses it, minus the default system prompt (keeps toy prompts short).
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable unicode map (the alphabet of a byte-level BPE)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars)))


def build_tiny_tokenizer(model_max_length: int = 1024):
    """A byte-level ``Qwen2Tokenizer`` with ChatML special tokens (263 tokens, no merges).

    Token id i < 256 is byte i; ``SPECIAL_TOKENS + REASONING_TOKENS`` follow as ids 256..262.
    It is a real ``Qwen2Tokenizer`` (Qwen's pre-tokenizer regex and NFC normaliser) because
    ``AutoTokenizer`` always loads a ``qwen2`` checkpoint with that class: building it the same
    way keeps the in-memory tokenizer identical to the one loaded back from disk. Text therefore
    round-trips through encode/decode up to NFC normalisation.
    """
    from tokenizers import AddedToken
    from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

    byte_map = _bytes_to_unicode()
    vocab = {byte_map[b]: b for b in range(256)}
    for i, token in enumerate(SPECIAL_TOKENS + REASONING_TOKENS):
        vocab[token] = 256 + i
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=[],
        unk_token=None,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        chat_template=CHAT_TEMPLATE,
        model_max_length=model_max_length,
        padding_side="left",
    )
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS],
                         special_tokens=True)
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in REASONING_TOKENS])
    if len(tokenizer) != 256 + len(SPECIAL_TOKENS) + len(REASONING_TOKENS):
        raise RuntimeError(f"tiny tokenizer has an unexpected size {len(tokenizer)}")
    return tokenizer


def make_tiny_model(tokenizer, *, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4,
                    num_kv_heads: int = 2, intermediate_size: int = 128, max_position_embeddings: int = 1024,
                    tie_word_embeddings: bool = True, rope_theta: float = 10000.0, seed: int = 0):
    """An in-memory ``Qwen2ForCausalLM`` with random weights drawn from ``seed``.

    The global torch RNG is left untouched (weights come from a forked RNG state).
    """
    from transformers import Qwen2Config, Qwen2ForCausalLM

    if hidden_size % num_heads != 0:
        raise ValueError(f"hidden_size ({hidden_size}) must be divisible by num_heads ({num_heads})")
    if num_heads % num_kv_heads != 0:
        raise ValueError(f"num_heads ({num_heads}) must be divisible by num_kv_heads ({num_kv_heads})")
    pad_id = tokenizer.pad_token_id
    eos_id = tokenizer.eos_token_id
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=max_position_embeddings,
        max_window_layers=num_layers,
        tie_word_embeddings=tie_word_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": float(rope_theta)},
        pad_token_id=pad_id,
        bos_token_id=pad_id,  # Qwen2.5 convention: bos = <|endoftext|>, never prepended by the tokenizer
        eos_token_id=eos_id,
        dtype="float32",
    )
    config.architectures = ["Qwen2ForCausalLM"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    model.eval()
    return model


def build_tiny_model(out_dir: str | Path, *, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4,
                     num_kv_heads: int = 2, intermediate_size: int = 128, max_position_embeddings: int = 1024,
                     tie_word_embeddings: bool = True, rope_theta: float = 10000.0, seed: int = 0) -> Path:
    """Write a tiny model + tokenizer + generation config to ``out_dir`` and return its path.

    The same arguments always give bit-identical weights.
    """
    from transformers import GenerationConfig

    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer(model_max_length=max_position_embeddings)
    model = make_tiny_model(tokenizer, hidden_size=hidden_size, num_layers=num_layers, num_heads=num_heads,
                            num_kv_heads=num_kv_heads, intermediate_size=intermediate_size,
                            max_position_embeddings=max_position_embeddings,
                            tie_word_embeddings=tie_word_embeddings, rope_theta=rope_theta, seed=seed)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.pad_token_id,
        eos_token_id=[tokenizer.eos_token_id, tokenizer.pad_token_id],
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("wrote tiny Qwen2 model (%d parameters, vocab %d) to %s", n_params, len(tokenizer), out)
    return out


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m relift.models.tiny", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--hidden-size", type=int, default=64)
    p.add_argument("--num-layers", type=int, default=2)
    p.add_argument("--num-heads", type=int, default=4)
    p.add_argument("--num-kv-heads", type=int, default=2)
    p.add_argument("--intermediate-size", type=int, default=128)
    p.add_argument("--max-position-embeddings", type=int, default=1024)
    p.add_argument("--rope-theta", type=float, default=10000.0)
    p.add_argument("--no-tie-word-embeddings", action="store_true", help="separate lm_head weights")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> Path:
    """CLI entry point; prints the folder and a one-line summary as JSON."""
    args = _parse_args(argv)
    path = build_tiny_model(
        args.out, hidden_size=args.hidden_size, num_layers=args.num_layers, num_heads=args.num_heads,
        num_kv_heads=args.num_kv_heads, intermediate_size=args.intermediate_size,
        max_position_embeddings=args.max_position_embeddings, tie_word_embeddings=not args.no_tie_word_embeddings,
        rope_theta=args.rope_theta, seed=args.seed)
    config = json.loads((path / "config.json").read_text())
    print(json.dumps({"path": str(path), "vocab_size": config["vocab_size"], "hidden_size": config["hidden_size"],
                      "num_hidden_layers": config["num_hidden_layers"]}))
    return path


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
