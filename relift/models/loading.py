"""Load HF causal LMs and tokenizers from a local folder or a hub id, with errors that say what to fix.

A path that exists locally is always loaded from disk. A string that does not exist locally is
only sent to the hub when it looks like a hub id (``name`` or ``org/name``); anything else (an
absolute path, ``./x``, ``~/x``, ``a/b/c``) is a missing local path and fails at once instead of
waiting on a network download.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import torch

__all__ = ["looks_like_hub_id", "resolve_model_path", "resolve_dtype", "load_tokenizer", "load_causal_lm",
           "load_config"]

logger = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")

_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
}


def looks_like_hub_id(path: str) -> bool:
    """True for ``name`` or ``org/name`` (no leading ``.``/``/``/``~``, at most one slash)."""
    return bool(_HUB_ID.match(path)) and ".." not in path


def resolve_model_path(path: str | os.PathLike) -> str:
    """The local folder for ``path``, or the unchanged hub id; raise for a missing local path."""
    text = os.fspath(path)
    if not text:
        raise ValueError("model path is empty; set actor_rollout_ref.model.path (a local folder or a hub id)")
    local = Path(text).expanduser()
    if local.exists():
        if not local.is_dir():
            raise NotADirectoryError(f"model path {str(local)!r} is a file; expected a folder with config.json "
                                     f"(a HF checkpoint, e.g. written by `python -m relift.models.tiny --out DIR`)")
        return str(local)
    if looks_like_hub_id(text):
        return text
    raise FileNotFoundError(f"model path {text!r} does not exist locally and is not a hub id (org/name); "
                            f"check the path, or build a tiny model with `python -m relift.models.tiny --out {text}`")


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """``torch.float32`` for None, else the torch dtype named by ``dtype`` (``bf16``, ``float32``, ...)."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    key = str(dtype).lower().removeprefix("torch.")
    if key not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(_DTYPES)}")
    return _DTYPES[key]


def _hub_error(kind: str, path: str, err: Exception) -> OSError:
    return OSError(f"could not load the {kind} {path!r}: it is not a local folder, so it was looked up on the "
                   f"Hugging Face hub, which failed ({type(err).__name__}: {err}). Without network access, "
                   f"download the checkpoint elsewhere and pass its local folder.")


def _check_local_checkpoint(local: str, kind: str, needed: tuple[str, ...]) -> None:
    folder = Path(local)
    if folder.is_dir() and not any((folder / name).exists() for name in needed):
        have = sorted(p.name for p in folder.iterdir())[:20]
        raise FileNotFoundError(f"{str(folder)!r} has no {kind} files (looked for {list(needed)}); it holds {have}")


def load_tokenizer(path: str | os.PathLike, trust_remote_code: bool = False, **kwargs: Any):
    """``AutoTokenizer.from_pretrained`` with a guaranteed pad token.

    A tokenizer without a pad token gets ``pad = eos`` (logged as a warning): batching needs a pad
    id, and masks, not the id, decide what is padding. No eos either is an error.
    """
    from transformers import AutoTokenizer

    resolved = resolve_model_path(path)
    is_local = Path(resolved).is_dir()
    if is_local:
        _check_local_checkpoint(resolved, "tokenizer", ("tokenizer.json", "tokenizer_config.json", "vocab.json",
                                                        "tokenizer.model"))
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved, trust_remote_code=trust_remote_code, **kwargs)
    except OSError as err:
        if is_local:
            raise
        raise _hub_error("tokenizer", resolved, err) from err
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"tokenizer at {resolved!r} has neither a pad token nor an eos token; "
                             f"set one in its tokenizer_config.json")
        logger.warning("tokenizer at %s has no pad token; using the eos token %r as pad", resolved,
                       tokenizer.eos_token)
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_config(path: str | os.PathLike, trust_remote_code: bool = False):
    """``AutoConfig.from_pretrained`` with the same path rules and errors as the loaders."""
    from transformers import AutoConfig

    resolved = resolve_model_path(path)
    is_local = Path(resolved).is_dir()
    if is_local:
        _check_local_checkpoint(resolved, "model config", ("config.json",))
    try:
        return AutoConfig.from_pretrained(resolved, trust_remote_code=trust_remote_code)
    except OSError as err:
        if is_local:
            raise
        raise _hub_error("model config", resolved, err) from err


def load_causal_lm(path: str | os.PathLike, dtype: str | torch.dtype | None = "float32",
                   device: str | torch.device = "cpu", attn_implementation: str | None = None,
                   trust_remote_code: bool = False, **kwargs: Any):
    """``AutoModelForCausalLM.from_pretrained`` moved to ``device``, in eval mode.

    ``attn_implementation`` is passed through (``sdpa``, ``eager``, ``flash_attention_2``; None lets
    transformers choose).
    """
    from transformers import AutoModelForCausalLM

    torch_dtype = resolve_dtype(dtype)
    resolved = resolve_model_path(path)
    is_local = Path(resolved).is_dir()
    if is_local:
        _check_local_checkpoint(resolved, "model config", ("config.json",))
    extra = dict(kwargs)
    if attn_implementation is not None:
        extra["attn_implementation"] = attn_implementation
    try:
        model = AutoModelForCausalLM.from_pretrained(resolved, dtype=torch_dtype, trust_remote_code=trust_remote_code,
                                                     **extra)
    except OSError as err:
        if is_local:
            raise
        raise _hub_error("model", resolved, err) from err
    model.to(device)
    model.eval()
    return model
