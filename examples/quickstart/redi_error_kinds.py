"""What kind of mistakes the models of redi_vs_baselines make (the "why" in docs/redi.md).

Samples each model's answers to the validation problems (temperature 0.6, top-p 0.95) and sorts
every answer into one kind:

* ``correct``;
* ``step slip``: a written step does not add up (``7+5=13``) or uses the wrong digits/carry;
* ``copy slip``: every step adds up and uses the right digits, but the boxed number is not the one
  the steps spell;
* ``other``: no parsable worked steps or box.

    python examples/quickstart/redi_error_kinds.py --out-dir outputs/redi_vs_baselines --seed 1 \\
        [--runs stage1 sft redi dpo simpo]

Prints a table and writes ``<out-dir>/error_kinds_seed<N>.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

STEP = re.compile(r"^(\d+(?:\+\d+)*)=(\d+)$")
BOX = re.compile(r"\\boxed\{(\d+)\}")


def classify(problem: str, answer: str) -> str:
    """The kind of one answer to ``a+b=``."""
    a, b = (int(x) for x in problem.rstrip("=").split("+"))
    box = BOX.search(answer)
    if box and int(box.group(1)) == a + b:
        return "correct"
    steps = answer.split("\\boxed")[0].split()
    parsed = [STEP.match(s) for s in steps]
    if not steps or not all(parsed) or not box:
        return "other"
    ra, rb = str(a)[::-1], str(b)[::-1]
    carry, digits = 0, []
    for i, m in enumerate(parsed):
        terms = [int(t) for t in m.group(1).split("+")]
        want = [int(x[i]) for x in (ra, rb) if i < len(x)] + ([1] if carry else [])
        total = int(m.group(2))
        if terms != want or sum(terms) != total:
            return "step slip"
        digits.append(total % 10)
        carry = total // 10
    spelled = int(("1" if carry else "") + "".join(str(d) for d in reversed(digits)))
    return "copy slip" if int(box.group(1)) != spelled else "step slip"


def sample(model_dir: Path, problems: list[str], n: int, seed: int) -> list[tuple[str, str]]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    torch.manual_seed(seed)
    todo = [p for p in problems for _ in range(n)]
    out = []
    for s in range(0, len(todo), 256):
        chunk = todo[s:s + 256]
        texts = [tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
                 for p in chunk]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            gen = model.generate(**enc, do_sample=True, temperature=0.6, top_p=0.95, max_new_tokens=48,
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        out += list(zip(chunk, tok.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out-dir", required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--runs", nargs="+", default=["stage1", "sft", "redi", "dpo", "simpo"])
    p.add_argument("--n", type=int, default=4)
    args = p.parse_args(argv)
    import pandas as pd

    out = Path(args.out_dir)
    problems = [r[0]["content"] for r in pd.read_parquet(out / "data" / "val.parquet")["prompt"]]
    kinds = ("correct", "step slip", "copy slip", "other")
    result = {}
    for run in args.runs:
        model = out / f"seed{args.seed}" / run / "hf"
        if not (model / "config.json").is_file():
            print(f"skipping {run}: no model at {model}", file=sys.stderr)
            continue
        got = [classify(q, a) for q, a in sample(model, problems, args.n, args.seed)]
        result[run] = {k: got.count(k) / len(got) for k in kinds}
    print("| model | " + " | ".join(kinds) + " |")
    print("|---" * (len(kinds) + 1) + "|")
    for run, frac in result.items():
        print(f"| {run} | " + " | ".join(f"{frac[k]:.3f}" for k in kinds) + " |")
    (out / f"error_kinds_seed{args.seed}.json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
