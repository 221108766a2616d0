"""PNG plots: a stage's metrics.jsonl (reward per function, completion length, loss, rollout speed, and the held-out
reward when the stage evaluated during training), training curves side by side, and held-out scores per stage with
their intervals (stages.png, seeds.png)."""
from __future__ import annotations

import json
from pathlib import Path


def read_metrics(path: Path) -> list[dict]:
    p = Path(path)
    if not p.is_file():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def summarize_metrics(metrics_path: Path, keep) -> dict:
    """{metric: {first, last, min, max}} over a stage's logged steps, for the metrics `keep(name)` selects."""
    rows = [r for r in read_metrics(metrics_path) if "train_runtime" not in r]
    out = {}
    for k in sorted({k for r in rows for k in r if keep(k)}):
        vals = [r[k] for r in rows if isinstance(r.get(k), (int, float))]
        if vals:
            out[k] = {"first": vals[0], "last": vals[-1], "min": min(vals), "max": max(vals)}
    return out


def _save(fig, title: str, out_png: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return Path(out_png)


def plot_metrics(metrics_path: Path, out_png: Path, title: str = "") -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in read_metrics(metrics_path) if "train_runtime" not in r]
    if not rows:
        return None
    panels = [
        ("reward", sorted({k for r in rows for k in r if k.startswith("rewards/") and k.endswith("/mean")}
                          | ({"reward"} if any("reward" in r for r in rows) else set()))),
        ("completion length (tokens)", ["completions/mean_length"]),
        ("loss", ["loss"]),
        ("rollout tokens/s (log)", ["rollout/tokens_per_s", "rollout/bound_tokens_per_s"]),  # GRPO: speed vs bound
        ("held-out reward (eval during training)",  # GRPO with stage.trainer.eval_strategy=steps
         sorted({k for r in rows for k in r if k.startswith("eval_rewards/") and k.endswith("/mean")}
                | ({"eval_reward"} if any("eval_reward" in r for r in rows) else set()))),
    ]
    panels = [(name, keys) for name, keys in panels if any(k in r for r in rows for k in keys)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5), squeeze=False)
    for ax, (name, keys) in zip(axes[0], panels):
        for key in keys:
            pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts), marker=".",
                        label=key.replace("eval_", "").replace("rewards/", "").replace("/mean", ""))
        if name.endswith("(log)"):
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend(fontsize=7)
    return _save(fig, title, out_png)


COMPARISON_PANELS = (("reward (GRPO)", "reward"), ("completion length (tokens, GRPO)", "completions/mean_length"),
                     ("loss (GRPO and SFT)", "loss"))


def plot_stage_comparison(stage_metrics: dict[str, Path], out_png: Path, title: str = "") -> Path | None:
    """One line per stage on shared panels (reward, completion length, loss) from each stage's metrics.jsonl."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {name: [r for r in read_metrics(p) if "train_runtime" not in r] for name, p in stage_metrics.items()}
    panels = [(t, k) for t, k in COMPARISON_PANELS if any(k in r for rows in runs.values() for r in rows)]
    if not panels:
        return None
    colors = {stage: f"C{i}" for i, stage in enumerate(runs)}  # one colour per stage on every panel
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5), squeeze=False)
    for ax, (name, key) in zip(axes[0], panels):
        for stage, rows in runs.items():
            pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts), marker=".", label=stage, color=colors[stage])
        ax.set_xlabel("step")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, title, out_png)


# Rewards that say whether the answer is right, in the order a stage's metrics are searched for one.
CORRECTNESS_REWARDS = ("correct", "accuracy", "countdown", "reasoning_gym")


def correctness_key(rows: list[dict]) -> str | None:
    """The metrics key of the first correctness reward a GRPO stage logged (`rewards/<name>/mean`), or None."""
    logged = {k for r in rows for k in r}
    return next((f"rewards/{n}/mean" for n in CORRECTNESS_REWARDS if f"rewards/{n}/mean" in logged), None)


def score_panel(ax, models: list[str], series: dict[str, list[tuple]], title: str) -> None:
    """Points with error bars, one series per label: series[label] = [(value, lo, hi) or None per model]."""
    for j, (label, points) in enumerate(series.items()):
        shift = (j - (len(series) - 1) / 2) * 0.12
        pts = [(i + shift, *p) for i, p in enumerate(points) if p is not None]
        if pts:
            x, v, lo, hi = zip(*pts)
            below, above = [max(0.0, a - b) for a, b in zip(v, lo)], [max(0.0, b - a) for a, b in zip(v, hi)]
            ax.errorbar(x, v, yerr=[below, above], marker="o", capsize=3, label=label)
    ax.set_xticks(range(len(models)), models, rotation=20)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def plot_stages(rows: list[dict], rl_metrics: dict[str, Path], out_png: Path, title: str = "") -> Path:
    """stages.png: per benchmark, pass@1 per model (greedy when measured, else sampled) with its 95% interval,
    strict and format-free as two series; beside it, per RL stage, the total and the correctness reward per step.
    `rows` are eval rows (model, dataset, score columns); `rl_metrics` maps a GRPO stage to its metrics.jsonl."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = "greedy" if any("greedy/strict" in r for r in rows) else "pass@1"
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    # training rows only: not the trainer's closing summary, nor the held-out evaluation rows (eval_* keys)
    curves = {s: [r for r in read_metrics(p) if "reward" in r] for s, p in rl_metrics.items()}
    curves = {s: c for s, c in curves.items() if c}
    fig, axes = plt.subplots(1, len(datasets) + len(curves), figsize=(5 * (len(datasets) + len(curves)), 3.8),
                             squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        mine = [r for r in rows if r["dataset"] == dataset]
        series = {reading: [(r[f"{key}/{reading}"], r[f"{key}/{reading}_lo"], r[f"{key}/{reading}_hi"])
                            for r in mine] for reading in ("strict", "free")}
        score_panel(ax, [r["model"] for r in mine], series, f"{dataset}: {key} pass@1 (95% interval)")
    for ax, (stage, rl_rows) in zip(axes[0][len(datasets):], curves.items()):
        for metric in ("reward", correctness_key(rl_rows)):
            pts = [(r["step"], r[metric]) for r in rl_rows if metric and r.get(metric) is not None]
            if pts:
                ax.plot(*zip(*pts), marker=".", label=metric.replace("rewards/", "").replace("/mean", ""))
        ax.set_xlabel("step")
        ax.set_title(f"{stage}: reward per step")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    return _save(fig, title, out_png)


def plot_seeds(combined: list[dict], key: str, out_png: Path, title: str = "") -> Path:
    """seeds.png: per benchmark, `key` pass@1 per model over several runs: the mean, the lowest and highest run as
    bars, strict and format-free as two series (`combined`: report.combine's rows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r["dataset"] for r in combined))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 3.8), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        mine = [r for r in combined if r["dataset"] == dataset]
        series = {reading: [(r[f"{key}/{reading}_mean"], r[f"{key}/{reading}_min"], r[f"{key}/{reading}_max"])
                            if f"{key}/{reading}_mean" in r else None for r in mine] for reading in ("strict", "free")}
        score_panel(ax, [r["model"] for r in mine], series, f"{dataset}: {key} pass@1 (mean, range)")
    return _save(fig, title, out_png)
