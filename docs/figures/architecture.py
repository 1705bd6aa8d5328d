"""Draw docs/architecture.png: the driver, the worker groups and one RL step's round trips.

    python docs/figures/architecture.py          # rewrites docs/architecture.png
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "architecture.png"

# (driver call, the group that answers, what comes back)
TRIPS = [
    ("set_rollout_seed(seed(step))", "policy", "engines reseeded"),
    ("generate_sequences(prompts)", "policy", "responses, masks (weights synced first)"),
    ("compute_score(batch)", "reward", "token_level_scores, acc, errors"),
    ("compute_log_prob(batch)", "policy", "old_log_probs  [skipped when on-policy]"),
    ("compute_ref_log_prob(batch)", "policy", "ref_log_prob  [only with a KL term]"),
    ("update_actor(batch + advantages)", "policy", "metrics  (ReLIFT: then update_actor_sft)"),
]


def head(ax, x, title, lines, color):
    ax.add_patch(FancyBboxPatch((x - 1.85, 6.0), 3.7, 1.9, boxstyle="round,pad=0.03", fc=color, ec="black", lw=1.2))
    ax.text(x, 7.75, title, ha="center", va="top", fontsize=11, weight="bold")
    for i, line in enumerate(lines):
        ax.text(x, 7.35 - 0.3 * i, line, ha="center", va="top", fontsize=8, family="monospace")
    ax.plot([x, x], [0.2, 5.95], color="#999999", lw=1, ls=":")


def main() -> Path:
    fig, ax = plt.subplots(figsize=(13, 8))
    ax.set_xlim(0, 13)
    ax.set_ylim(0, 8)
    ax.axis("off")
    lanes = {"driver": 2.2, "policy": 7.0, "reward": 10.9}
    head(ax, lanes["driver"], "driver (one process)", [
        "main_rl: cfg -> build_rl_plan", "-> RLRunSpec (frozen, saved)", "RLTrainer(spec).fit():",
        "prompts, advantages, hooks,", "validation, checkpoints"], "#dbe9f6")
    head(ax, lanes["policy"], "policy group (1 per device)", [
        "ActorRolloutRefWorker(", "PolicyWorkerSpec, role)", "FSDP2 actor + AdamW,",
        "rollout engine, reference"], "#e3f2d9")
    head(ax, lanes["reward"], "reward group (1 worker)", [
        "RewardWorker(RewardSpec,", "tokenizer_path)", "scoring processes with", "hard per-sample timeouts"],
        "#fbe5d6")
    for i, (call, group, back) in enumerate(TRIPS):
        y = 5.5 - i * 0.9
        x0, x1 = lanes["driver"], lanes[group]
        ax.annotate("", xy=(x1 - 0.05, y), xytext=(x0 + 0.05, y),
                    arrowprops=dict(arrowstyle="->", color="#1f4e79", lw=1.4))
        ax.annotate("", xy=(x0 + 0.05, y - 0.35), xytext=(x1 - 0.05, y - 0.35),
                    arrowprops=dict(arrowstyle="->", color="#7f7f7f", lw=1.0, ls="--"))
        ax.text(x0 + 0.2, y + 0.07, f"{i + 1}. {call}", fontsize=9, color="#1f4e79", weight="bold")
        ax.text(x0 + 0.2, y - 0.29, back, fontsize=8.5, color="#404040")
    ax.text(0.2, 0.25, "Every arrow carries one DataProto; the spec sections reach the workers once, when the "
            "groups start.", fontsize=9, style="italic")
    ax.set_title("One RL step: six round trips from the driver to the worker groups", fontsize=12)
    fig.tight_layout()
    fig.savefig(OUT, dpi=110)
    plt.close(fig)
    return OUT


if __name__ == "__main__":
    print(main())
