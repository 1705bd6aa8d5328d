"""relift vs TRL on the same CPU GRPO jobs, alternating runs, one table (issue 18 item 1).

Usage (from any directory; ``run.sh`` picks the interpreter)::

    python bench/vs_trl/run.py                       # jobs tiny and small, 2 repeats each
    python bench/vs_trl/run.py --jobs tiny --repeats 3 --steps 6 --warmup 2
    python bench/vs_trl/run.py --relift-env RELIFT_CPU_THREADS=2   # a relift variant

Per job both systems get the same model (a relift tiny Qwen2 checkpoint with random weights and the
local byte tokenizer), the same "a+b=" prompts (dataset/toy_arithmetic.py, chat-templated), n samples
per prompt, the same response cap, fp32, one optimiser step per RL step (on-policy), no KL, no
validation, no saves, and the same reward function (``boxed_reward.py``: TRL calls it in-process,
relift in its reward worker processes). Each run is a fresh process; runs alternate relift / TRL (the first system
swaps every repeat) so load drift on a shared machine hits both. Per run: the mean of the per-step
wall times after ``--warmup`` steps, generated tokens per second (samples x mean response length /
step time) and the peak RSS and PSS of the whole process tree (sampled every 0.1 s from /proc, so
the reward processes count; PSS splits pages that forked processes share instead of counting them
once per process). TRL lives in its own venv (``--trl-venv``, created on first use with the
same torch and transformers as relift, TRL pinned to ``TRL_VERSION``); it is never a relift dependency.

Writes ``OUT/results.json`` (every run) and prints a markdown table of medians over repeats with the
ratios relift / TRL (below 1 = relift faster / smaller).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
TRL_VERSION = "1.16.0"

# name -> (hidden, layers, prompts per step, samples per prompt, response tokens); issue 18's two jobs
JOBS: dict[str, dict] = {
    "tiny": dict(hidden=128, layers=4, prompts=8, n=4, response_length=32),
    "small": dict(hidden=256, layers=6, prompts=32, n=8, response_length=64),
}
# the scaling sweep (issue 18.6, bench/vs_trl/sweep.sh): the tiny job with ONE of width, response
# length or prompts per step changed
SWEEP_AXES: dict[str, tuple[str, list[int]]] = {
    "w": ("hidden", [256, 512, 1024]),
    "r": ("response_length", [128, 512]),
    "b": ("prompts", [32, 64]),
}
for _prefix, (_key, _values) in SWEEP_AXES.items():
    for _value in _values:
        JOBS[f"{_prefix}{_value}"] = {**JOBS["tiny"], _key: _value}


def _sh(cmd: list[str], **kw) -> None:
    subprocess.run(cmd, check=True, **kw)


def ensure_trl_venv(venv: Path) -> Path:
    """The TRL venv's python; created with relift's torch/transformers versions plus ``trl==TRL_VERSION``."""
    py = venv / "bin" / "python"
    if py.exists():
        return py
    import torch
    import transformers

    print(
        f"[vs_trl] creating {venv} (trl=={TRL_VERSION}, torch=={torch.__version__.split('+')[0]}, "
        f"transformers=={transformers.__version__})",
        flush=True,
    )
    base_python = getattr(sys, "_base_executable", sys.executable)  # the interpreter under relift's venv
    _sh([base_python, "-m", "venv", str(venv)])
    _sh(
        [
            str(py),
            "-m",
            "pip",
            "install",
            "-q",
            f"trl=={TRL_VERSION}",
            f"torch=={torch.__version__.split('+')[0]}",
            f"transformers=={transformers.__version__}",
        ]
    )
    return py


def prepare(work: Path, jobs: list[str], seed: int) -> None:
    """Toy arithmetic parquet + one tiny Qwen2 folder per job (same shapes as the quickstart's models)."""
    from relift.models.tiny import build_tiny_model

    if not (work / "data" / "train.parquet").exists():
        _sh(
            [
                sys.executable,
                "-m",
                "dataset.toy_arithmetic",
                "--out",
                str(work / "data"),
                "--train-size",
                "2000",
                "--val-size",
                "16",
                "--seed",
                "0",
            ],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
        )
    for name in jobs:
        j = JOBS[name]
        if not (work / name / "model" / "config.json").exists():
            build_tiny_model(
                work / name / "model",
                hidden_size=j["hidden"],
                num_layers=j["layers"],
                num_heads=4,
                num_kv_heads=4,
                intermediate_size=2 * j["hidden"],
                max_position_embeddings=max(256, 2 * (32 + j["response_length"])),
                seed=seed,
            )


_PAGE = os.sysconf("SC_PAGE_SIZE")


def _tree_pids(root: int) -> list[int]:
    """``root`` and its descendants, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _tree_rss(pids: list[int]) -> int:
    """Summed RSS in bytes (``statm``: cheap, no page-table walk)."""
    rss = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as fh:
                rss += int(fh.read().split()[1]) * _PAGE
        except (OSError, IndexError, ValueError):
            pass
    return rss


def _tree_pss(pids: list[int]) -> int:
    """Summed PSS in bytes. RSS counts a page shared by several processes (a forked child's
    copy-on-write pages, shared libraries) once per process; PSS splits it between them, so the
    PSS sum is the tree's real footprint. Both are reported: relift's reward scorers are forked
    children, TRL scores in-process."""
    pss = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as fh:
                pss += next(int(line.split()[1]) * 1024 for line in fh if line.startswith("Pss:"))
        except (OSError, IndexError, ValueError, StopIteration):
            pass
    return pss


class PeakRSS:
    """Peak summed RSS and PSS (bytes) of a process and all its descendants, sampled on a thread.

    RSS is read every ``every_s`` from ``statm`` (about 1 ms of CPU). PSS needs ``smaps_rollup``, a
    walk of every page table that cost ~12 ms of CPU per read of a 600 MB process and holds the
    process's memory-map lock meanwhile: read every 0.1 s it took ~20% of one of this box's two
    cores from the systems being timed. So PSS is read only near the RSS peak (within 2% of it), when
    the RSS sum has grown by 1% since the last read or once a second: where the PSS peak is.
    """

    def __init__(self, pid: int, every_s: float = 0.05, pss_every_s: float = 1.0):
        self.pid = pid
        self.peak = 0
        self.peak_pss = 0
        self.pss_reads = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(every_s, pss_every_s), daemon=True)
        self._thread.start()

    def _loop(self, every_s: float, pss_every_s: float) -> None:
        last_pss, rss_at_last_pss = -float("inf"), 0
        while not self._stop.is_set():
            pids = _tree_pids(self.pid)
            rss = _tree_rss(pids)
            self.peak = max(self.peak, rss)
            now = time.monotonic()
            near_peak = rss >= 0.98 * self.peak
            if near_peak and (rss > 1.01 * rss_at_last_pss or now - last_pss >= pss_every_s):
                self.peak_pss = max(self.peak_pss, _tree_pss(pids))
                self.pss_reads += 1
                last_pss, rss_at_last_pss = now, rss
            self._stop.wait(every_s)

    def stop(self) -> tuple[int, int]:
        self._stop.set()
        self._thread.join()
        return self.peak, self.peak_pss


def _run(cmd: list[str], env: dict[str, str], log: Path) -> tuple[tuple[int, int], float]:
    with open(log, "w") as fh:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)
        rss = PeakRSS(proc.pid)
        rc = proc.wait()
        peak = rss.stop()
    if rc != 0:
        raise RuntimeError(f"{cmd[:3]} failed with exit code {rc}; see {log}")
    return peak, time.perf_counter() - t0


def relift_cmd(work: Path, name: str, steps: int, seed: int, lr: float, out: Path) -> list[str]:
    j = JOBS[name]
    return [
        sys.executable,
        "-m",
        "trainer.main_rl",
        f"data.train_files={work / 'data' / 'train.parquet'}",
        "data.val_files=null",
        "data.max_prompt_length=32",
        f"data.max_response_length={j['response_length']}",
        f"data.train_batch_size={j['prompts']}",
        f"actor_rollout_ref.model.path={work / name / 'model'}",
        f"actor_rollout_ref.rollout.n={j['n']}",
        "actor_rollout_ref.rollout.temperature=1.0",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={j['prompts']}",
        # micro-batches by token budget (relift's default budget, 4096 tokens), as verl's GRPO recipes run
        "actor_rollout_ref.actor.use_dynamic_bsz=true",
        f"actor_rollout_ref.actor.optim.lr={lr}",
        "actor_rollout_ref.actor.optim.weight_decay=0.0",
        "algorithm.adv_estimator=grpo",
        # the same reward function as TRL's side, in relift's reward processes (boxed_reward.py)
        f"reward.custom_reward_function.path={HERE / 'boxed_reward.py'}",
        "reward.custom_reward_function.name=compute_score",
        f"trainer.total_training_steps={steps}",
        "trainer.total_epochs=100",
        "trainer.test_freq=-1",
        "trainer.save_freq=-1",
        "trainer.val_before_train=false",
        f"trainer.default_local_dir={out}",
        "trainer.resume_mode=disable",
        f"trainer.seed={seed}",
        "trainer.device=cpu",
        "trainer.logger=[jsonl]",
        f"trainer.experiment_name=vs_trl_{name}",
    ]


def run_relift(work: Path, name: str, args: argparse.Namespace, tag: str, extra_env: dict[str, str]) -> dict:
    out = Path(tempfile.mkdtemp(prefix=f"relift_{name}_", dir=work))
    # a variant's KEY=VALUE with a dot in KEY is a Hydra override for relift, anything else an env var
    overrides = [f"{k}={v}" for k, v in extra_env.items() if "." in k]
    extra_env = {k: v for k, v in extra_env.items() if "." not in k}
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HYDRA_FULL_ERROR": "1", **args.relift_env, **extra_env}
    cmd = relift_cmd(work, name, args.steps, args.seed, args.lr, out) + overrides
    (peak, peak_pss), wall = _run(cmd, env, work / f"{tag}.log")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "timing_s/step" in r]
    return {
        "step_s": [r["timing_s/step"] for r in rows],
        "response_length": [r.get("response_length/mean", float("nan")) for r in rows],
        "peak_rss": peak,
        "peak_pss": peak_pss,
        "wall_s": wall,
        "breakdown": {
            k: statistics.mean(r[k] for r in rows[args.warmup :])
            for k in rows[-1]
            if k.startswith("timing_s/") and all(k in r for r in rows[args.warmup :])
        },
    }


def run_trl(work: Path, name: str, args: argparse.Namespace, tag: str, py: Path) -> dict:
    j = JOBS[name]
    job = dict(
        model=str(work / name / "model"),
        train_file=str(work / "data" / "train.parquet"),
        prompts=j["prompts"],
        n=j["n"],
        response_length=j["response_length"],
        steps=args.steps,
        seed=args.seed,
        lr=args.lr,
    )
    job_file, out_file = work / f"{tag}.job.json", work / f"{tag}.out.json"
    job_file.write_text(json.dumps(job))
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", **args.trl_env}
    cmd = [str(py), str(HERE / "trl_job.py"), str(job_file), str(out_file)]
    (peak, peak_pss), wall = _run(cmd, env, work / f"{tag}.log")
    res = json.loads(out_file.read_text())
    return {
        "step_s": res["step_s"],
        "response_length": res["response_length"],
        "peak_rss": peak,
        "peak_pss": peak_pss,
        "wall_s": wall,
        "threads": res["threads"],
        "versions": res["versions"],
    }


def summarise(runs: list[dict], warmup: int) -> dict[tuple[str, str], dict]:
    """Median over repeats of (mean step time after warmup, tokens/s, peak RSS) per (job, system)."""
    table: dict[tuple[str, str], dict] = {}
    for r in runs:
        j = JOBS[r["job"]]
        steps = r["step_s"][warmup:]
        lens = [x for x in r["response_length"][warmup:] if x == x]
        step = statistics.mean(steps)
        tok = j["prompts"] * j["n"] * (statistics.mean(lens) if lens else float("nan")) / step
        table.setdefault((r["job"], r["system"]), {"step": [], "tok": [], "rss": [], "pss": []})
        cell = table[(r["job"], r["system"])]
        cell["step"].append(step)
        cell["tok"].append(tok)
        cell["rss"].append(r["peak_rss"] / 2**30)
        cell["pss"].append(r.get("peak_pss", float("nan")) / 2**30)
    return {
        k: {m: statistics.median(v) for m, v in cell.items()} | {"n": len(cell["step"])} for k, cell in table.items()
    }


def print_table(summary: dict, jobs: list[str], systems: list[str]) -> None:
    """Medians per (job, system), then each system's ratio to TRL (or, without TRL, to the first)."""
    print("| job | system | s/step | tokens/s | peak RSS GiB | peak PSS GiB | runs |")
    print("|---|---|---:|---:|---:|---:|---:|")
    base_name = "trl" if "trl" in systems else systems[0]
    for name in jobs:
        for system in systems:
            c = summary.get((name, system))
            if c:
                print(
                    f"| {name} | {system} | {c['step']:.3f} | {c['tok']:.0f} | {c['rss']:.2f} | {c['pss']:.2f} "
                    f"| {c['n']} |"
                )
        base = summary.get((name, base_name))
        for system in systems:
            a = summary.get((name, system))
            if a and base and system != base_name:
                print(
                    f"| {name} | {system}/{base_name} | {a['step'] / base['step']:.2f}x | "
                    f"{a['tok'] / base['tok']:.2f}x | {a['rss'] / base['rss']:.2f}x | {a['pss'] / base['pss']:.2f}x | |"
                )


def _env_pairs(pairs: list[str]) -> dict[str, str]:
    out = {}
    for p in pairs:
        if "=" not in p:
            raise SystemExit(f"--relift-env/--trl-env take KEY=VALUE, got {p!r}")
        k, v = p.split("=", 1)
        out[k] = v
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", nargs="+", default=["tiny", "small"], choices=sorted(JOBS))
    p.add_argument(
        "--systems",
        nargs="*",
        default=["relift", "trl"],
        choices=["relift", "trl"],
        help="relift (its defaults) and/or trl; none with --variants runs only the variants",
    )
    p.add_argument("--repeats", type=int, default=2, help="runs per (job, system), alternating")
    p.add_argument("--steps", type=int, default=6, help="RL steps per run")
    p.add_argument("--warmup", type=int, default=2, help="first steps left out of the step time")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--out", type=Path, default=REPO / "outputs" / "bench_vs_trl")
    p.add_argument("--trl-venv", type=Path, default=HERE / ".venv-trl")
    p.add_argument("--relift-env", nargs="*", default=[], metavar="KEY=VALUE", help="extra env for relift runs")
    p.add_argument("--trl-env", nargs="*", default=[], metavar="KEY=VALUE", help="extra env for TRL runs")
    p.add_argument(
        "--variants",
        nargs="*",
        default=[],
        metavar="LABEL:KEY=VALUE[,KEY=VALUE]",
        help="extra relift systems with their own env vars or (KEY with a dot) Hydra overrides, e.g. "
        "t1:RELIFT_CPU_THREADS=1 or mb32:actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=32",
    )
    p.add_argument(
        "--replot",
        nargs=2,
        type=Path,
        metavar=("RESULTS_JSON", "PNG"),
        help="run nothing: print the tables of a results.json and draw its sweep plot to PNG",
    )
    args = p.parse_args(argv)
    if args.replot:
        replot(*args.replot)
        return
    if args.warmup >= args.steps:
        p.error(f"--warmup ({args.warmup}) must be below --steps ({args.steps})")
    args.relift_env, args.trl_env = _env_pairs(args.relift_env), _env_pairs(args.trl_env)
    variant_env = {"relift": {}}
    for v in args.variants:
        label, _, pairs = v.partition(":")
        if not label or not pairs or label in ("relift", "trl"):
            p.error(f"--variants takes LABEL:KEY=VALUE[,KEY=VALUE] with a new label, got {v!r}")
        variant_env[label] = _env_pairs(pairs.split(","))
    systems = list(args.systems) + [label for label in variant_env if label != "relift"]
    if not systems:
        p.error("nothing to run: give --systems and/or --variants")
    work = args.out.resolve()
    work.mkdir(parents=True, exist_ok=True)
    trl_py = ensure_trl_venv(args.trl_venv.resolve()) if "trl" in args.systems else None
    prepare(work, args.jobs, args.seed)
    load = [os.getloadavg()]
    runs: list[dict] = []
    for rep in range(args.repeats):
        for name in args.jobs:
            order = systems if rep % 2 == 0 else list(reversed(systems))
            for system in order:
                tag = f"{name}_{system}_{rep}"
                print(f"[vs_trl] {tag} ...", flush=True)
                res = (
                    run_trl(work, name, args, tag, trl_py)
                    if system == "trl"
                    else run_relift(work, name, args, tag, variant_env[system])
                )
                res.update(job=name, system=system, repeat=rep, loadavg=os.getloadavg())
                load.append(res["loadavg"])
                runs.append(res)
                print(
                    f"[vs_trl] {tag}: steps {[round(s, 3) for s in res['step_s']]} peak RSS "
                    f"{res['peak_rss'] / 2**30:.2f} GiB (PSS {res['peak_pss'] / 2**30:.2f}) "
                    f"load {res['loadavg'][0]:.2f}",
                    flush=True,
                )
    summary = summarise(runs, args.warmup)
    (work / "results.json").write_text(
        json.dumps(
            {"args": {k: str(v) for k, v in vars(args).items()}, "cores": os.cpu_count(), "runs": runs}, indent=1
        )
    )
    print(
        f"\ncores {os.cpu_count()}, load average (1 min) during the runs: "
        f"{min(x[0] for x in load):.2f}..{max(x[0] for x in load):.2f}; results in {work / 'results.json'}"
    )
    report(summary, args.jobs, systems, work / "sweep.png")


def report(summary: dict, jobs: list[str], systems: list[str], png: Path) -> None:
    """The results table, and with sweep jobs among ``jobs`` one table per axis and the plot ``png``."""
    print_table(summary, jobs, systems)
    if any(name not in ("tiny", "small") for name in jobs):
        from sweep_plot import report_sweep

        report_sweep(summary, JOBS, jobs, systems, SWEEP_AXES, png)


def replot(results: Path, png: Path) -> None:
    """Tables and plot of an earlier run from its ``results.json`` (the docs' plots are drawn so)."""
    data = json.loads(results.read_text())
    runs = data["runs"]
    jobs = list(dict.fromkeys(r["job"] for r in runs))
    systems = list(dict.fromkeys(r["system"] for r in runs))
    report(summarise(runs, int(data["args"]["warmup"])), jobs, systems, png)


if __name__ == "__main__":
    main()
