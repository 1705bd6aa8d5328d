"""Write ReLIFT's training parquet: the OpenR1-Math 46k set with DeepSeek-R1 demonstrations.

    python -m dataset.prepare_relift [--source Elliott/Openr1-Math-46k-8192 | FILE_OR_DIR] [--out PATH]

The paper trains on the set LUFFY published on the Hugging Face hub, ``Elliott/Openr1-Math-46k-8192``
(46k OpenR1-Math-220k problems whose R1 traces are at most 8192 tokens and math-verify checked);
ReLIFT's ``dataset/prepare_train_luffy_format.py`` loads it with
``datasets.load_dataset("Elliott/Openr1-Math-46k-8192", split="train")`` and writes it unchanged to
``train_data/openr1.parquet``. Its rows are already in the verl/ReLIFT training format: ``data_source``
(str), ``prompt`` ([system, user] messages; scripts built on it read the question as
``prompt[1]["content"]``), ``target`` ([{"role": "assistant", "content": R1 trace}]), ``ability``,
``reward_model`` ({"ground_truth": str, "style": "rule"}), ``extra_info`` ({"index": int,
"split": str}). The same layout is declared in the dataset card of its 8.5k subset
SII-Enigma/OpenR1-Math-R1-8.5k.

This script reads that layout (by hub id through ``datasets``, or from a local parquet / jsonl file
or a folder of them, e.g. one fetched with ``huggingface-cli download --repo-type dataset
Elliott/Openr1-Math-46k-8192 --local-dir DIR``), checks every row (naming file and row on a bad one),
normalises it (a string ``target`` becomes one assistant message; a missing ``extra_info`` gets
``index``/``split``; ``--strip-think`` removes a leading ``<think>`` from demonstrations, for
models whose template prefills it: the trainer also does this when it tokenises), and writes the
parquet. ``--limit`` keeps the first N rows (smoke runs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HUB_ID = "Elliott/Openr1-Math-46k-8192"
DEFAULT_OUT = "train_data/openr1.parquet"  # where ReLIFT's script writes it (relative to dataset/)
REQUIRED = ("data_source", "prompt", "target", "reward_model")

__all__ = ["HUB_ID", "load_rows", "normalise_row", "prepare", "main"]


def _read_local(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows and their origins ('file row i') from a parquet/jsonl file or a folder of them."""
    import pandas as pd  # noqa: PLC0415

    from relift.data.io import to_python  # noqa: PLC0415

    files = sorted(p for p in path.rglob("*") if p.suffix in (".parquet", ".jsonl", ".json")) \
        if path.is_dir() else [path]
    if not files:
        raise FileNotFoundError(f"{path} holds no .parquet/.jsonl files")
    rows, origins = [], []
    for f in files:
        if f.suffix == ".parquet":
            frame = pd.read_parquet(f)
            records = [{k: to_python(v) for k, v in r.items()} for r in frame.to_dict(orient="records")]
        else:
            with open(f, encoding="utf-8") as fh:
                records = []
                for i, line in enumerate(fh):
                    if line.strip():
                        try:
                            records.append(json.loads(line))
                        except json.JSONDecodeError as err:
                            raise ValueError(f"{f} line {i + 1}: not JSON ({err})") from err
        rows.extend(records)
        origins.extend(f"{f} row {i}" for i in range(len(records)))
    return rows, origins


def load_rows(source: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows from a local file/folder, else from the hub id through ``datasets``."""
    path = Path(source).expanduser()
    if path.exists():
        return _read_local(path)
    if "/" not in source or source.startswith((".", "/")):
        raise FileNotFoundError(f"{source!r} is neither an existing file/folder nor a hub id (ORG/NAME)")
    try:
        import datasets  # noqa: PLC0415
    except ImportError as err:
        raise ImportError(f"loading {source!r} from the hub needs the `datasets` package (pip install datasets) "
                          f"and network access; or download it first (huggingface-cli download --repo-type dataset "
                          f"{source} --local-dir DIR) and pass DIR") from err
    ds = datasets.load_dataset(source, split="train")
    return [dict(r) for r in ds], [f"{source} row {i}" for i in range(len(ds))]


def _messages(value: Any, where: str, column: str) -> list[dict[str, str]]:
    from relift.data.io import as_messages  # noqa: PLC0415

    return [{"role": m["role"], "content": m["content"]} for m in as_messages(value, column, where)]


def normalise_row(row: dict[str, Any], index: int, where: str, strip_think: bool = False) -> dict[str, Any]:
    """One row in the training format, or ValueError naming ``where`` and the column."""
    missing = [c for c in REQUIRED if c not in row]
    if missing:
        raise ValueError(f"{where}: missing column(s) {missing}; it has {sorted(row)}")
    if not isinstance(row["data_source"], str) or not row["data_source"]:
        raise ValueError(f"{where}: column 'data_source' must be a non-empty string, got {row['data_source']!r}")
    prompt = _messages(row["prompt"], where, "prompt")
    target = row["target"]
    if isinstance(target, str):
        target = [{"role": "assistant", "content": target}]
    target = _messages(target, where, "target")
    if strip_think:
        for m in target[:1]:
            text = m["content"].lstrip()
            if text.startswith("<think>"):
                m["content"] = text[len("<think>"):].lstrip("\n")
    rm = row["reward_model"]
    if not isinstance(rm, dict) or rm.get("ground_truth") in (None, ""):
        raise ValueError(f"{where}: column 'reward_model' must be a dict with a non-empty 'ground_truth', got {rm!r}")
    extra = dict(row.get("extra_info") or {})
    extra.setdefault("index", index)
    extra.setdefault("split", "train")
    return {"data_source": row["data_source"], "prompt": prompt, "target": target,
            "ability": row.get("ability") or "math",
            "reward_model": {"ground_truth": str(rm["ground_truth"]), "style": rm.get("style") or "rule"},
            "extra_info": {"index": int(extra["index"]), "split": str(extra["split"])}}


def prepare(source: str, out: str | os.PathLike, limit: int | None = None, strip_think: bool = False) -> Path:
    """Load, check, normalise and write; returns the parquet path."""
    import pandas as pd  # noqa: PLC0415
    from tqdm.auto import tqdm  # noqa: PLC0415

    rows, origins = load_rows(source)
    if limit is not None:
        rows, origins = rows[:limit], origins[:limit]
    if not rows:
        raise ValueError(f"{source}: no rows")
    out_rows = [normalise_row(r, i, origins[i], strip_think)
                for i, r in enumerate(tqdm(rows, desc="checking rows", disable=len(rows) < 5000))]
    out_path = Path(out).expanduser()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(out_rows).to_parquet(out_path, index=False)
    return out_path


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", default=HUB_ID, help=f"hub id or local parquet/jsonl file or folder (default {HUB_ID})")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output parquet (default {DEFAULT_OUT}, relative to the "
                                                      "current directory)")
    p.add_argument("--limit", type=int, default=None, help="keep only the first N rows")
    p.add_argument("--strip-think", action="store_true", help="remove a leading <think> from each demonstration")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "python -m dataset.prepare_relift") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        path = prepare(args.source, args.out, args.limit, args.strip_think)
    except (FileNotFoundError, ImportError, ValueError, KeyError) as err:
        print(f"[prepare_relift] {err}", file=sys.stderr)
        return 2
    import pandas as pd  # noqa: PLC0415

    frame = pd.read_parquet(path)
    print(f"[prepare_relift] wrote {len(frame)} rows to {path} (columns: {', '.join(frame.columns)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
