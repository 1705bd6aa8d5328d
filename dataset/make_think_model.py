"""Make the "-think" variant of an HF checkpoint folder, as the ReLIFT README asks users to do by hand.

    python -m dataset.make_think_model SRC DST [--context-16k] [--max-position-embeddings N] [--rope-theta X]

ReLIFT trains RoadQAQ/Qwen2.5-Math-1.5B-16k-think, RoadQAQ/Qwen2.5-Math-7B-think and
RoadQAQ/Qwen2.5-7B-think; its README (github.com/TheRoadQaQ/ReLIFT, "Model Preparation") says that
instead of downloading them one can edit the base models: tokenizer_config.json for all three, and
config.json too for the two Qwen2.5-Math models. The tokenizer change is the chat template: after the
assistant header the generation prompt also writes ``<think>\\n``, so every rollout starts inside a
thought (LUFFY's Elliott/Qwen2.5-Math-7B-16k-think, the model ReLIFT builds on, does the same).

The config change (``--context-16k``) is LUFFY's: "we change the rope theta from 10000 to 40000 and
extend the window size to 16384" (the LUFFY README, quoted in github.com/Simplified-Reasoning/LUFFY
issue #9, where the authors add that they edited config.json directly, following OpenR1); the
published Elliott/Qwen2.5-Math-7B-SFT config.json has ``max_position_embeddings: 16384`` and
``rope_theta: 40000.0``. So ``--context-16k`` sets exactly those two fields; each can also be given
on its own (``rope_theta`` is written where the config keeps it: top level, or inside
``rope_parameters`` as transformers >= 5 saves it). Other fields (e.g. ``sliding_window``, unused while
``use_sliding_window`` is false) are left as they are.

What it does: copies every file of SRC to DST (weight files ``*.safetensors``/``*.bin``/``*.pt``
are hard-linked when SRC and DST share a file system, else copied; ``--copy`` always copies),
appends the ``<think>\\n`` prefill to the generation prompt of the chat template (in
tokenizer_config.json, or chat_template.jinja where the tokenizer keeps it), edits config.json when
asked, then loads the tokenizer back and checks that the prompt now ends with ``<think>\\n``.
A template that already prefills ``<think>`` is left unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

__all__ = ["THINK_PREFILL", "LUFFY_16K", "think_chat_template", "make_think_model", "main"]

THINK_PREFILL = "<think>\n"
# LUFFY's 16k variants (see the module docstring for the sources)
LUFFY_16K = {"max_position_embeddings": 16384, "rope_theta": 40000.0}
_APPEND = "{%- if add_generation_prompt %}{{- '<think>\\n' }}{%- endif %}"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def _render_generation_prompt(template: str) -> str:
    """The text a template writes for one user message with the generation prompt (jinja2, as HF)."""
    import jinja2  # noqa: PLC0415 - transformers' own dependency

    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = lambda msg: (_ for _ in ()).throw(ValueError(msg))
    return env.from_string(template).render(messages=[{"role": "user", "content": "q"}],
                                            add_generation_prompt=True, bos_token="", eos_token="")


def think_chat_template(template: str) -> tuple[str, bool]:
    """``(template that prefills <think>\\n after the assistant header, changed?)``.

    The prefill is appended at the end of the template, where HF chat templates write the
    generation prompt; a template whose generation prompt already ends in ``<think>`` is returned
    unchanged.
    """
    if _render_generation_prompt(template).rstrip().endswith("<think>"):
        return template, False
    new = template + _APPEND
    rendered = _render_generation_prompt(new)
    if not rendered.endswith(THINK_PREFILL):
        raise ValueError(f"appending the prefill did not make the prompt end with <think>: {rendered[-80:]!r}")
    return new, True


def _copy_tree(src: Path, dst: Path, copy_weights: bool) -> dict[str, int]:
    counts = {"linked": 0, "copied": 0}
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        target = dst / rel
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if not copy_weights and path.suffix in _WEIGHT_SUFFIXES:
            try:
                os.link(path, target)
                counts["linked"] += 1
                continue
            except OSError:
                pass  # another file system: copy instead
        shutil.copy2(path, target)
        counts["copied"] += 1
    return counts


def _edit_template(dst: Path) -> str:
    """Rewrite the chat template in place; returns where it was found."""
    jinja_file = dst / "chat_template.jinja"
    if jinja_file.is_file():
        new, changed = think_chat_template(jinja_file.read_text())
        jinja_file.write_text(new)
        return f"{jinja_file.name} ({'prefill added' if changed else 'already prefills <think>'})"
    cfg_file = dst / "tokenizer_config.json"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{dst} has neither tokenizer_config.json nor chat_template.jinja: "
                                "not a tokenizer folder")
    cfg = json.loads(cfg_file.read_text())
    template = cfg.get("chat_template")
    if isinstance(template, list):  # named templates: change the default one
        entry = next((t for t in template if t.get("name") == "default"), None)
        if entry is None:
            raise ValueError(f"{cfg_file}: chat_template is a list without a 'default' entry")
        entry["template"], changed = think_chat_template(entry["template"])
    elif isinstance(template, str):
        cfg["chat_template"], changed = think_chat_template(template)
    else:
        raise ValueError(f"{cfg_file} has no chat_template; a -think model needs one (give the base model a "
                         "chat template first)")
    cfg_file.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
    return f"{cfg_file.name} ({'prefill added' if changed else 'already prefills <think>'})"


def _edit_config(dst: Path, fields: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    path = dst / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{dst} has no config.json to edit")
    cfg = json.loads(path.read_text())
    changes = {}
    for key, value in fields.items():
        # transformers >= 5 keeps rope_theta inside rope_parameters; older configs at the top level
        holder = cfg["rope_parameters"] if key == "rope_theta" and isinstance(cfg.get("rope_parameters"), dict) \
            and "rope_theta" in cfg["rope_parameters"] else cfg
        changes[key] = (holder.get(key), value)
        holder[key] = value
    path.write_text(json.dumps(cfg, indent=2) + "\n")
    return changes


def make_think_model(src: str | os.PathLike, dst: str | os.PathLike, *, context_16k: bool = False,
                     max_position_embeddings: int | None = None, rope_theta: float | None = None,
                     copy_weights: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Write the -think variant of checkpoint folder ``src`` to ``dst``; returns what changed."""
    src_p, dst_p = Path(src).expanduser().resolve(), Path(dst).expanduser().resolve()
    if not src_p.is_dir():
        raise FileNotFoundError(f"source checkpoint folder {src_p} does not exist (a hub id must be downloaded "
                                "first, e.g. with `huggingface-cli download ORG/NAME --local-dir DIR`)")
    if dst_p == src_p or src_p in dst_p.parents:
        raise ValueError(f"destination {dst_p} must be outside the source folder {src_p}")
    if dst_p.exists() and any(dst_p.iterdir()):
        if not overwrite:
            raise FileExistsError(f"destination {dst_p} exists and is not empty (pass --overwrite to replace it)")
        shutil.rmtree(dst_p)
    dst_p.mkdir(parents=True, exist_ok=True)
    counts = _copy_tree(src_p, dst_p, copy_weights)
    template_note = _edit_template(dst_p)
    fields: dict[str, Any] = dict(LUFFY_16K) if context_16k else {}
    if max_position_embeddings is not None:
        fields["max_position_embeddings"] = int(max_position_embeddings)
    if rope_theta is not None:
        fields["rope_theta"] = float(rope_theta)
    config_changes = _edit_config(dst_p, fields) if fields else {}

    from transformers import AutoTokenizer  # noqa: PLC0415

    tok = AutoTokenizer.from_pretrained(str(dst_p))
    prompt = tok.apply_chat_template([{"role": "user", "content": "q"}], tokenize=False, add_generation_prompt=True)
    if not prompt.rstrip().endswith("<think>"):
        raise RuntimeError(f"{dst_p}: the saved tokenizer's prompt does not end with <think>: {prompt[-80:]!r}")
    return {"dst": str(dst_p), "files": counts, "template": template_note, "config": config_changes,
            "prompt_tail": prompt[-40:]}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m dataset.make_think_model", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Example: python -m dataset.make_think_model models/Qwen2.5-Math-7B "
                                       "models/Qwen2.5-Math-7B-16k-think --context-16k")
    p.add_argument("src", help="HF checkpoint folder of the base model")
    p.add_argument("dst", help="folder to write the -think variant to")
    p.add_argument("--context-16k", action="store_true",
                   help="also set LUFFY's 16k fields in config.json: max_position_embeddings=16384, rope_theta=40000")
    p.add_argument("--max-position-embeddings", type=int, default=None, help="set config.json max_position_embeddings")
    p.add_argument("--rope-theta", type=float, default=None, help="set config.json rope_theta")
    p.add_argument("--copy", action="store_true", help="copy weight files instead of hard-linking them")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty destination folder")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    try:
        out = make_think_model(args.src, args.dst, context_16k=args.context_16k,
                               max_position_embeddings=args.max_position_embeddings, rope_theta=args.rope_theta,
                               copy_weights=args.copy, overwrite=args.overwrite)
    except (FileNotFoundError, FileExistsError, ValueError, RuntimeError) as err:
        print(f"[make_think_model] {err}", file=sys.stderr)
        return 2
    print(f"[make_think_model] wrote {out['dst']}: {out['files']['linked']} weight files linked, "
          f"{out['files']['copied']} files copied; template: {out['template']}")
    for key, (old, new) in out["config"].items():
        print(f"[make_think_model] config.json {key}: {old} -> {new}")
    print(f"[make_think_model] prompt now ends with {out['prompt_tail']!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
