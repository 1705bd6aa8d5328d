"""What the plan-time data checks cost: tokenizer load, row checks, prompt lengths, vs the dataset's load.

Usage (from the repo root)::

    .venv/bin/python bench/bench_data_checks.py [--data FILE.parquet] [--rows N] [--tokenizer DIR]

``--rows N`` repeats the file's rows up to N (a large-file stand-in). Without ``--tokenizer`` the
tiny byte-level tokenizer (relift/models/tiny.py, one token per byte) is written to a temp folder.
Prints one JSON line of seconds. Numbers measured with it are in docs/data_keys.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

DEFAULT_DATA = "/work/shared/data/relift/valid.parquet"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=DEFAULT_DATA, help="RL parquet file (default: ReLIFT's valid.parquet copy)")
    p.add_argument("--rows", type=int, default=0, help="repeat rows up to this many (0: the file as is)")
    p.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the tiny byte-level one)")
    p.add_argument("--max-prompt-length", type=int, default=1 << 20)
    args = p.parse_args()
    if not Path(args.data).is_file():
        raise SystemExit(f"no data file {args.data}; pass --data FILE.parquet (an RL parquet: prompt, data_source, "
                         "reward_model)")

    import pandas as pd

    from relift.data.rl_dataset import RLDataset
    from relift.data.validate import DataFindings, check_prompt_lengths, check_rl_files
    from trainer.plan.data_checks import plan_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if args.rows:
            frame = pd.read_parquet(data)
            frame = pd.concat([frame] * (args.rows // len(frame) + 1), ignore_index=True).iloc[:args.rows]
            data = str(Path(tmp) / "big.parquet")
            frame.to_parquet(data)
        tok_dir = args.tokenizer
        if tok_dir is None:
            from relift.models.tiny import build_tiny_tokenizer

            tok_dir = str(Path(tmp) / "tok")
            build_tiny_tokenizer().save_pretrained(tok_dir)
        t0 = time.perf_counter()
        tokenizer, why = plan_tokenizer(tok_dir)
        t_tok = time.perf_counter() - t0
        if tokenizer is None:
            raise SystemExit(f"no tokenizer: {why}")
        t0 = time.perf_counter()
        found = check_rl_files("data.train_files", [data], prompt_key="prompt", source_key="data_source",
                               target_key="target", tokenizer=tokenizer)
        t_rows = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = DataFindings()
        check_prompt_lengths("data.train_files", found.prompts, tokenizer, limit=args.max_prompt_length,
                             truncation="error", apply_chat_template=True, prompt_key="prompt", out=out)
        t_len = time.perf_counter() - t0
        t0 = time.perf_counter()
        RLDataset(data, tokenizer, max_prompt_length=args.max_prompt_length, max_response_length=64)
        t_ds = time.perf_counter() - t0
    print(json.dumps({"data": args.data, "rows": found.rows, "problems": len(found.problems) + len(out.problems),
                      "tokenizer_load_s": round(t_tok, 3), "row_checks_s": round(t_rows, 3),
                      "prompt_lengths_s": round(t_len, 3), "plan_checks_total_s": round(t_tok + t_rows + t_len, 3),
                      "rl_dataset_load_s": round(t_ds, 3)}))


if __name__ == "__main__":
    main()
