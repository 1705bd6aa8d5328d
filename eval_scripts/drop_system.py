"""Drop the leading system message of every chat prompt in an RL parquet file (ReLIFT's evaluation does so).

ReLIFT's ``eval_scripts/generate_vllm.py`` runs with ``--remove_system True``: its ``valid.parquet``
prompts open with a long "Thought / Solution" system message used in training, and the released
models are evaluated on the user message alone (chat template applied). ``eval_scripts/inference.sh``
calls this before relift's own evaluation so the prompts match.

    python eval_scripts/drop_system.py IN.parquet OUT.parquet
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def drop_system(messages: Any, where: str) -> list[dict[str, Any]]:
    """The chat messages without their leading system message(s); errors name the row."""
    msgs = list(messages) if messages is not None else []
    if not msgs or not all(isinstance(m, dict) and "role" in m for m in msgs):
        raise ValueError(f"{where}: 'prompt' is not a list of chat messages with 'role' keys: {str(messages)[:200]}")
    while msgs and msgs[0]["role"] == "system":
        msgs = msgs[1:]
    if not msgs:
        raise ValueError(f"{where}: the prompt has only a system message")
    return [dict(m) for m in msgs]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("input", type=Path, help="RL parquet with a chat-message 'prompt' column")
    p.add_argument("output", type=Path, help="where to write the copy without system messages")
    args = p.parse_args(argv)
    import pandas as pd  # noqa: PLC0415 - keeps --help instant

    if not args.input.is_file():
        print(f"[drop_system] {args.input}: no such file", file=sys.stderr)
        return 2
    df = pd.read_parquet(args.input)
    if "prompt" not in df.columns:
        print(f"[drop_system] {args.input}: no 'prompt' column (columns: {list(df.columns)})", file=sys.stderr)
        return 2
    had = sum(1 for m in df["prompt"] if m is not None and len(m) and m[0]["role"] == "system")
    try:
        df["prompt"] = [drop_system(m, f"{args.input} row {i}") for i, m in enumerate(df["prompt"])]
    except ValueError as e:
        print(f"[drop_system] {e}", file=sys.stderr)
        return 2
    args.output.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(args.output)
    print(f"[drop_system] {args.output}: {len(df)} rows, the system message removed from {had}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
