"""PNG plots of a stage's metrics.jsonl: reward per function, completion length, loss, rollout speed."""
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
    ]
    panels = [(name, keys) for name, keys in panels if any(k in r for r in rows for k in keys)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5), squeeze=False)
    for ax, (name, keys) in zip(axes[0], panels):
        for key in keys:
            pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts), marker=".", label=key.replace("rewards/", "").replace("/mean", ""))
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


def plot_eval_scores(rows: list[dict], out_png: Path, keys=("pass@1", "maj@k"), title: str = "") -> Path:
    """Grouped bars of evaluation scores per model (rows: {"model": name, key: value, ...})."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4, 1.4 * len(rows)), 3.5))
    width = 0.8 / len(keys)
    for j, key in enumerate(keys):
        ax.bar([i + j * width for i in range(len(rows))], [r[key] for r in rows], width, label=key)
    ax.set_xticks([i + width * (len(keys) - 1) / 2 for i in range(len(rows))], [r["model"] for r in rows])
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return Path(out_png)
