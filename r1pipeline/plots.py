"""PNG plots of a stage's metrics.jsonl: reward per function, completion length, loss."""
from __future__ import annotations

import json
from pathlib import Path


def read_metrics(path: Path) -> list[dict]:
    p = Path(path)
    if not p.is_file():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


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
    ]
    panels = [(name, keys) for name, keys in panels if any(k in r for r in rows for k in keys)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5), squeeze=False)
    for ax, (name, keys) in zip(axes[0], panels):
        for key in keys:
            pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts), marker=".", label=key.replace("rewards/", "").replace("/mean", ""))
        ax.set_xlabel("step")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return Path(out_png)
