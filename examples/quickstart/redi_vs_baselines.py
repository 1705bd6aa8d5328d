"""REDI vs continued SFT, DPO and SimPO on a toy teacher, on CPU (issue 12 item 7; docs/redi.md).

The REDI paper's two stages at toy scale, through the project's own code paths:

0. a toy teacher writes K worked column-addition traces per problem (dataset/toy_arithmetic.py's
   format), each with probability ``--slip`` carrying one injected slip (a step total off by one,
   or a dropped carry) that makes its answer wrong; the traces are stored in OpenR1-Math-Raw's
   layout and turned into SFT positives and (chosen, rejected) pairs by ``dataset.prepare_redi``
   (the paper's rules);
1. per seed, a tiny random Qwen2 model (relift.models.tiny) gets stage-1 SFT on the positives
   (the offline trainer, ``trainer.main_offline``'s config and checks);
2. from that SFT model, four runs with the same number of optimiser steps and examples per step:
   more SFT on the positives, REDI (alpha 0.8), DPO (beta 0.001, reference = the SFT model) and
   SimPO (beta 2, gamma 1): the paper's settings. Learning rates keep the paper's ratios
   (REDI 1e-6 : DPO 2e-7 : SimPO 5e-7, i.e. DPO x0.2 and SimPO x0.5 of REDI's; continued SFT uses
   REDI's) scaled to the toy by ``--lr2``; linear decay with 10% warmup as in the paper;
3. validation accuracy mean@n (temperature 0.6, top-p 0.95, as the paper samples) on held-out
   problems, scored by the project's toy_arithmetic scorer.

Writes ``<out>/redi_vs_baselines.json`` (records ``{"method", "seed", "val_acc"}``),
``<out>/stage1.json`` (the SFT model's accuracy per seed), ``<out>/redi_vs_baselines.png``
(accuracy per method and seed; REDI's chosen/rejected per-token log-prob, margin and pair
accuracy per step) and a markdown table on stdout. Run it as
``sh examples/quickstart/redi_vs_baselines.sh``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

METHODS = ("sft", "redi", "dpo", "simpo")
LR_RATIO = {"sft": 1.0, "redi": 1.0, "dpo": 0.2, "simpo": 0.5}  # the paper's tuned lr ratios to REDI's


# ------------------------------------------------------------------------------------------ teacher
def teacher_trace(a: int, b: int, rng: random.Random, slip: bool) -> tuple[str, int]:
    """A worked column addition (units first) and its final answer; with ``slip``, one step goes wrong."""
    ra, rb = str(a)[::-1], str(b)[::-1]
    n = max(len(ra), len(rb))
    slip_step = rng.randrange(n) if slip else -1
    steps, digits, carry = [], [], 0
    for i in range(n):
        terms = [x[i] for x in (ra, rb) if i < len(x)]
        drop = i == slip_step and carry == 1 and rng.random() < 0.5  # the slip drops the carry ...
        if carry and not drop:
            terms.append("1")
        total = sum(int(t) for t in terms)
        if i == slip_step and not drop:  # ... or gets the step's sum off by one
            total = total + 1 if total == 0 else total + rng.choice((-1, 1))
        steps.append("+".join(terms) + "=" + str(total))
        digits.append(total % 10)
        carry = total // 10
    value = int(("1" if carry else "") + "".join(str(d) for d in reversed(digits)))
    return " ".join(steps) + " \\boxed{" + str(value) + "}", value


def write_teacher_raw(path: Path, n_problems: int, k: int, slip: float, levels: tuple[int, ...], seed: int,
                      held_out: set[tuple[int, int]]) -> None:
    """Teacher traces in OpenR1-Math-Raw's layout (the verification flags say whether the answer is right)."""
    import pandas as pd

    from dataset.toy_arithmetic import make_question

    rng = random.Random(seed)
    rows = []
    while len(rows) < n_problems:
        level = rng.choice(levels)
        a, b = make_question(rng, level)
        if (a, b) in held_out:
            continue
        gens, flags = [], []
        for _ in range(k):
            text, value = teacher_trace(a, b, rng, rng.random() < slip)
            gens.append(text)
            flags.append(value == a + b)
        rows.append({"problem": f"{a}+{b}=", "solution": "", "answer": str(a + b), "problem_type": "Arithmetic",
                     "question_type": "math-word-problem", "problem_is_valid": "Yes", "solution_is_valid": "Yes",
                     "source": "toy_teacher", "synthetic": True, "generations": gens, "generations_count": k,
                     "correctness": {"llama_verification": flags, "math_verify_answer": flags,
                                     "math_verify_reparsed_answer": flags},
                     "reparsed_answers": [str(a + b)] * k, "messages": []})
    pd.DataFrame(rows).to_parquet(path, index=False)


# ------------------------------------------------------------------------------------------ training
def offline(overrides: list[str]) -> None:
    """One offline-trainer run, in this process (config composed and checked as main_offline does)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from trainer.main_offline import run_main

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "trainer" / "config"), version_base=None):
        cfg = compose(config_name="offline_trainer", overrides=overrides)
    rc = run_main(cfg)
    if rc:
        raise SystemExit(f"offline run failed with exit status {rc}: {overrides}")


def common(args: argparse.Namespace, out: Path, seed: int, batch: int) -> list[str]:
    return [f"data.max_length={args.max_length}", f"data.train_batch_size={batch}",
            f"data.micro_batch_size_per_gpu={batch}", "optim.weight_decay=1e-4", "optim.lr_scheduler_type=linear",
            "optim.lr_warmup_steps_ratio=0.1", "optim.lr_warmup_steps=-1", "trainer.total_epochs=1000",
            f"trainer.default_local_dir={out}", "trainer.resume_mode=disable", f"trainer.seed={seed}",
            "trainer.device=cpu", "trainer.backend=inprocess", "trainer.export_hf=true",
            "trainer.logger=[jsonl]", f"trainer.experiment_name={out.name}"]


def run_stage1(args: argparse.Namespace, data: Path, sd: Path, seed: int, val_rows: list[dict[str, Any]],
               stamp: Any) -> dict[str, Any]:
    """A tiny random model, stage-1 SFT on the positives (exported to ``sd/stage1/hf``), its accuracy."""
    from relift.models.tiny import build_tiny_model

    stamp(f"seed {seed}: 1/3 tiny model + stage-1 SFT ({args.sft1_steps} steps x {args.sft1_batch})")
    build_tiny_model(str(sd / "model"), hidden_size=args.hidden, num_layers=args.layers, num_heads=4,
                     num_kv_heads=4, intermediate_size=2 * args.hidden, max_position_embeddings=128, seed=seed)
    offline([f"data.train_files={data / 'sft.parquet'}", f"model.path={sd / 'model'}", "data.kind=sft",
             "loss.type=sft", f"optim.lr={args.sft1_lr}", f"trainer.total_training_steps={args.sft1_steps}",
             *common(args, sd / "stage1", seed, args.sft1_batch)])
    acc = evaluate(sd / "stage1" / "hf", val_rows, args.val_n, seed)
    stamp(f"seed {seed}: stage-1 SFT model val_acc {acc:.3f}")
    return {"method": "stage1", "seed": seed, "val_acc": acc}


# ------------------------------------------------------------------------------------------ evaluation
def evaluate(model_dir: Path, val_rows: list[dict[str, Any]], n: int, seed: int, batch: int = 256) -> float:
    """mean@n accuracy: n samples per problem (temperature 0.6, top-p 0.95), toy_arithmetic scorer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from relift.rewards import compute_score

    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    prompts = [tok.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=False) for r in val_rows]
    truths = [r["reward_model"]["ground_truth"] for r in val_rows]
    torch.manual_seed(seed)
    correct = 0
    todo = [(p, t) for p, t in zip(prompts, truths) for _ in range(n)]
    for s in range(0, len(todo), batch):
        chunk = todo[s:s + batch]
        enc = tok([p for p, _ in chunk], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            gen = model.generate(**enc, do_sample=True, temperature=0.6, top_p=0.95, max_new_tokens=48,
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        texts = tok.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        for text, (_, truth) in zip(texts, chunk):
            score = compute_score("toy_arithmetic", text, truth)
            score = score.get("acc", score.get("score", 0.0)) if isinstance(score, dict) else score
            correct += float(score) >= 0.5
    return correct / len(todo)


# ------------------------------------------------------------------------------------------ report
def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot(out: Path, records: list[dict[str, Any]], seeds: list[int], tag: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    for x, method in enumerate(METHODS):
        vals = [r["val_acc"] for r in records if r["method"] == method]
        ax.scatter([x] * len(vals), vals, color="k", s=14, zorder=3)
        if vals:
            ax.bar(x, statistics.mean(vals), color=f"C{x}", alpha=0.6)
    stage1 = json.loads((out / "stage1.json").read_text()) if (out / "stage1.json").is_file() else []
    if stage1:
        ax.axhline(statistics.mean(r["val_acc"] for r in stage1), color="gray", ls="--", label="stage-1 SFT model")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xticks(range(len(METHODS)), ["more SFT", "REDI a=0.8", "DPO", "SimPO"])
    ax.set_ylabel("validation accuracy (mean@n)")
    ax.set_title("stage 2 from the same SFT model (bars: mean, dots: seeds)")
    for seed in seeds:
        path = out / f"seed{seed}" / f"redi{tag}" / "metrics.jsonl"
        rows = [m for m in read_metrics(path) if "redi/logps/chosen" in m]
        steps = [m.get("step", m.get("training/global_step")) for m in rows]
        label = f"seed {seed}"
        axes[1].plot(steps, [m["redi/logps/chosen"] for m in rows], color="C2", alpha=0.7,
                     label="chosen" if seed == seeds[0] else None)
        axes[1].plot(steps, [m["redi/logps/rejected"] for m in rows], color="C3", alpha=0.7,
                     label="rejected" if seed == seeds[0] else None)
        axes[2].plot(steps, [m["redi/margins"] for m in rows], alpha=0.8, label=f"margin, {label}")
        if "redi/accuracies" in rows[0] if rows else False:
            axes[2].plot(steps, [m["redi/accuracies"] for m in rows], ls=":", alpha=0.8,
                         label=f"chosen > rejected, {label}")
    axes[1].set_title("REDI: mean log-prob per token")
    axes[1].set_xlabel("step")
    axes[1].legend(fontsize=8)
    axes[2].set_title("REDI: margin and fraction chosen > rejected")
    axes[2].set_xlabel("step")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    path = out / f"redi_vs_baselines{tag}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def table(records: list[dict[str, Any]], stage1: list[dict[str, Any]], seeds: list[int]) -> str:
    lines = ["| method | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |",
             "|---" * (len(seeds) + 2) + "|"]
    rows = [("stage-1 SFT model", stage1)] + [(m, [r for r in records if r["method"] == m]) for m in METHODS]
    for name, recs in rows:
        by_seed = {r["seed"]: r["val_acc"] for r in recs}
        vals = [by_seed.get(s) for s in seeds]
        mean = statistics.mean(v for v in vals if v is not None) if any(v is not None for v in vals) else None
        lines.append(f"| {name} | " + " | ".join("-" if v is None else f"{v:.3f}" for v in vals) +
                     f" | {'-' if mean is None else f'{mean:.3f}'} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--seeds", default="1 2 3", help="space-separated model/training seeds")
    p.add_argument("--problems", type=int, default=3000, help="teacher problems")
    p.add_argument("--k", type=int, default=4, help="teacher traces per problem")
    p.add_argument("--slip", type=float, default=0.5, help="probability that a teacher trace holds a slip")
    p.add_argument("--levels", default="1,2,3")
    p.add_argument("--val-size", type=int, default=200)
    p.add_argument("--val-n", type=int, default=4)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--max-length", type=int, default=72)
    p.add_argument("--sft1-steps", type=int, default=150)
    p.add_argument("--sft1-batch", type=int, default=64)
    p.add_argument("--sft1-lr", type=float, default=3e-3)
    p.add_argument("--stage2-steps", type=int, default=60)
    p.add_argument("--stage2-batch", type=int, default=32, help="pairs (or SFT examples) per optimiser step")
    p.add_argument("--lr2", type=float, default=3e-4, help="REDI's stage-2 lr; the others keep the paper's ratios")
    p.add_argument("--methods", default=" ".join(METHODS))
    p.add_argument("--alpha", type=float, default=0.8, help="REDI's alpha (the paper: 0.8)")
    p.add_argument("--tag", default="", help="suffix for the stage-2 run folders and result files (ablations)")
    p.add_argument("--reuse-stage1", action="store_true",
                   help="reuse <out>/seed<N>/stage1/hf and stage1.json from an earlier run (ablations)")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split()]
    methods = args.methods.split()
    if not seeds or any(m not in METHODS for m in methods):
        p.error(f"--seeds must list integers and --methods be among {METHODS}")
    out = Path(args.out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()

    def stamp(msg: str) -> None:
        print(f"[redi_vs_baselines] {time.time() - start:6.0f}s: {msg}", flush=True)

    import pandas as pd

    from dataset.prepare_redi import prepare
    from dataset.toy_arithmetic import make_rows
    from relift.models.tiny import build_tiny_tokenizer

    levels = tuple(int(x) for x in args.levels.split(","))
    data = out / "data"
    data.mkdir(exist_ok=True)
    _, val_rows = make_rows(1, args.val_size, levels=levels, worked_frac=1.0, seed=0)
    held = {tuple(int(x) for x in r["prompt"][0]["content"][:-1].split("+")) for r in val_rows}
    stamp(f"0/3 toy teacher: {args.problems} problems x {args.k} traces, slip {args.slip} -> OpenR1-Math-Raw layout")
    write_teacher_raw(data / "teacher_raw.parquet", args.problems, args.k, args.slip, levels, 0, held)
    counts = prepare(pd.read_parquet(data / "teacher_raw.parquet"), build_tiny_tokenizer(), data)
    (data / "val.parquet").unlink(missing_ok=True)
    pd.DataFrame(val_rows).to_parquet(data / "val.parquet", index=False)

    records: list[dict[str, Any]] = []
    stage1: list[dict[str, Any]] = []
    for seed in seeds:
        sd = out / f"seed{seed}"
        sft_model = sd / "stage1" / "hf"
        old = {r["seed"]: r for r in json.loads((out / "stage1.json").read_text())} \
            if args.reuse_stage1 and (out / "stage1.json").is_file() else {}
        if args.reuse_stage1 and (sft_model / "config.json").is_file() and seed in old:
            stage1.append(old[seed])
            stamp(f"seed {seed}: reusing the stage-1 SFT model {sft_model} (val_acc {old[seed]['val_acc']:.3f})")
        else:
            stage1.append(run_stage1(args, data, sd, seed, val_rows, stamp))
        for method in methods:
            lr = args.lr2 * LR_RATIO[method]
            if method == "sft":
                extra = [f"data.train_files={data / 'sft.parquet'}", "data.kind=sft", "loss.type=sft"]
            else:
                extra = [f"data.train_files={data / 'pairs.parquet'}", "data.kind=pairs", f"loss.type={method}"]
                extra += {"redi": [f"loss.alpha={args.alpha}"], "dpo": ["loss.beta=0.001"],
                          "simpo": ["loss.beta=2.0", "loss.gamma=1.0"]}[method]
            run_dir = sd / f"{method}{args.tag}"
            stamp(f"seed {seed}: 2/3 stage 2 {method} ({args.stage2_steps} steps x {args.stage2_batch}, lr {lr:g})")
            offline([f"model.path={sft_model}", f"optim.lr={lr}", f"trainer.total_training_steps={args.stage2_steps}",
                     *extra, *common(args, run_dir, seed, args.stage2_batch)])
            acc = evaluate(run_dir / "hf", val_rows, args.val_n, seed)
            records.append({"method": method, "seed": seed, "val_acc": acc})
            stamp(f"seed {seed}: 3/3 {method} val_acc {acc:.3f}")
            (out / f"redi_vs_baselines{args.tag}.json").write_text(json.dumps(records, indent=1) + "\n")
        if not args.reuse_stage1:
            (out / "stage1.json").write_text(json.dumps(stage1, indent=1) + "\n")
    (out / f"redi_vs_baselines{args.tag}.json").write_text(json.dumps(records, indent=1) + "\n")
    png = plot(out, records, seeds, args.tag)
    wall = time.time() - start
    summary = {"wall_s": round(wall), "data_counts": counts, "args": vars(args)}
    (out / f"run{args.tag}.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(table(records, stage1, seeds))
    stamp(f"done in {wall:.0f}s: {out / f'redi_vs_baselines{args.tag}.json'}, {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
