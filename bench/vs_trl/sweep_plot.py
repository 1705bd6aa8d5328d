"""The scaling sweep's picture and table: step time and peak memory against one job dimension at a time.

``run.py`` calls :func:`report_sweep` when its ``--jobs`` include sweep jobs (``w256``, ``r512``,
``b64``...: the tiny job with one of width, response length or prompts per step changed); the tiny
job itself is the first point of every axis.
"""

from __future__ import annotations

from pathlib import Path

AXIS_LABELS = {
    "hidden": "model width (hidden size)",
    "response_length": "response tokens",
    "prompts": "prompts per step",
}


def _points(summary: dict, jobs: dict, axis_key: str, names: list[str], system: str) -> list[tuple[int, dict]]:
    base = jobs["tiny"]
    out = []
    for name in names:
        job = jobs[name]
        others_equal = all(job[k] == base[k] for k in base if k != axis_key)
        if others_equal and (name, system) in summary:
            out.append((job[axis_key], summary[(name, system)]))
    return sorted(out, key=lambda p: p[0])


def report_sweep(summary: dict, jobs: dict, ran: list[str], systems: list[str], axes: dict, out: Path) -> Path | None:
    """Print one markdown table per axis and draw ``out`` (2 rows: s/step, peak PSS; one column per axis)."""
    columns = []
    for _prefix, (key, _values) in axes.items():
        names = [n for n in ran if n == "tiny" or jobs[n] != jobs["tiny"]]
        per_system = {s: _points(summary, jobs, key, names, s) for s in systems}
        if any(len(v) > 1 for v in per_system.values()):
            columns.append((key, per_system))
    if not columns:
        return None
    for key, per_system in columns:
        print(f"\n{AXIS_LABELS[key]}: s/step, peak PSS GiB (and relift/TRL)")
        print("| " + key + " | " + " | ".join(f"{s} s/step | {s} PSS" for s in systems) + " | relift/trl step |")
        print("|---:|" + "---:|---:|" * len(systems) + "---:|")
        xs = sorted({x for pts in per_system.values() for x, _ in pts})
        for x in xs:
            cells, by = [], {}
            for s in systems:
                c = dict(per_system[s]).get(x)
                by[s] = c
                cells.append(f"{c['step']:.3f} | {c['pss']:.2f}" if c else "- | -")
            ratio = (
                f"{by['relift']['step'] / by['trl']['step']:.2f}x"
                if by.get("relift") and by.get("trl")
                else "-"
            )
            print(f"| {x} | " + " | ".join(cells) + f" | {ratio} |")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes_grid = plt.subplots(2, len(columns), figsize=(4.2 * len(columns), 6.5), squeeze=False)
    for col, (key, per_system) in enumerate(columns):
        for system, pts in per_system.items():
            if not pts:
                continue
            xs = [x for x, _ in pts]
            axes_grid[0][col].plot(xs, [c["step"] for _, c in pts], marker="o", label=system)
            axes_grid[1][col].plot(xs, [c["pss"] for _, c in pts], marker="o", label=system)
        for row, ylabel in enumerate(("s / RL step", "peak PSS of the process tree, GiB")):
            ax = axes_grid[row][col]
            ax.set_xscale("log", base=2)
            ax.set_xlabel(AXIS_LABELS[key])
            ax.set_ylabel(ylabel)
            if row == 0:
                ax.set_yscale("log")
            ax.grid(True, alpha=0.3)
            ax.legend()
    fig.suptitle("relift vs TRL: the tiny GRPO job with one dimension scaled (CPU)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"\nplot: {out}")
    return out
