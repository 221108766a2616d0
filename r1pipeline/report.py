"""Several runs of one recipe (seeds), combined: the mean and range of every eval score per model and benchmark.

python -m r1pipeline.report <run_dir> [<run_dir> ...] --out <dir>

Reads each run's eval/results.csv (give the run directory or its eval directory) and writes to <dir>:

- seeds.csv: a row per model and benchmark: the number of runs, and each score's mean, min and max over them;
- seeds.md:  the runs (directory, seed, dataset.seed), one table of the headline scores as "mean [min, max]" (a row
  per model, a column group per benchmark), and per benchmark the final model's gain over base in every run;
- seeds.png: headline pass@1 per model (greedy when measured, else sampled), the mean with the range as bars,
  strict and format-free as two series.

The range is the lowest and highest run, not an interval: with 3 seeds it says how far the runs spread.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from r1pipeline.evaluation import READINGS, score_columns

VALUES = [k for k in score_columns() if not k.endswith(("_lo", "_hi"))] + ["mean_length"]


def eval_dir(path: Path) -> Path:
    path = Path(path)
    return path if (path / "results.csv").is_file() else path / "eval"


def read_run(path: Path) -> tuple[list[dict], dict]:
    """A run's eval rows (numbers parsed, blanks dropped) and what tells it apart (directory, seed, dataset.seed)."""
    d = eval_dir(path)
    if not (d / "results.csv").is_file():
        raise SystemExit(f"{path}: no eval/results.csv; run stage=eval in it first")
    rows = []
    for r in csv.DictReader((d / "results.csv").open()):
        rows.append({"model": r["model"], "dataset": r["dataset"],
                     **{k: float(r[k]) for k in VALUES if r.get(k) not in (None, "")}})
    manifest = json.loads((d / "manifest.json").read_text()) if (d / "manifest.json").is_file() else {}
    config = manifest.get("config", {})
    return rows, {"run": str(path), "seed": config.get("seed"), "dataset.seed": config.get("dataset", {}).get("seed")}


def combine(runs: list[list[dict]]) -> list[dict]:
    """{model, dataset, runs, <score>_mean/_min/_max} per (model, benchmark), in the first run's order."""
    keys = list(dict.fromkeys((r["model"], r["dataset"]) for rows in runs for r in rows))
    out = []
    for model, dataset in keys:
        mine = [r for rows in runs for r in rows if (r["model"], r["dataset"]) == (model, dataset)]
        row = {"model": model, "dataset": dataset, "runs": len(mine)}
        for k in VALUES:
            vals = [r[k] for r in mine if k in r]
            if vals:
                row.update({f"{k}_mean": sum(vals) / len(vals), f"{k}_min": min(vals), f"{k}_max": max(vals)})
        out.append(row)
    return out


def headline_key(rows: list[dict]) -> str:
    return "greedy" if any("greedy/strict" in r or "greedy/strict_mean" in r for r in rows) else "pass@1"


def gains(runs: list[list[dict]], key: str) -> dict[str, dict[str, list[float]]]:
    """{benchmark: {reading: [final model's score - base's, one per run]}}; the final model is each run's last."""
    out: dict[str, dict[str, list[float]]] = {}
    for rows in runs:
        for dataset in dict.fromkeys(r["dataset"] for r in rows):
            mine = [r for r in rows if r["dataset"] == dataset]
            base = next((r for r in mine if r["model"] == "base"), None)
            if base is None or mine[-1] is base:
                continue
            for reading in READINGS:
                k = f"{key}/{reading}"
                if k in base and k in mine[-1]:
                    out.setdefault(dataset, {}).setdefault(reading, []).append(mine[-1][k] - base[k])
    return out


def markdown(combined: list[dict], runs: list[list[dict]], labels: list[dict]) -> str:
    key = headline_key(combined)
    datasets = list(dict.fromkeys(r["dataset"] for r in combined))
    cols = [(d, f"{key}/{reading}") for d in datasets for reading in READINGS]
    by = {(r["model"], r["dataset"]): r for r in combined}
    lines = [f"{len(runs)} runs: " + "; ".join(f"{x['run']} (seed {x['seed']}, dataset.seed {x['dataset.seed']})"
                                               for x in labels),
             f"\n{key} pass@1, mean [min, max] over the runs (strict: R1 format required; free: format-free).\n",
             "| model | " + " | ".join(f"{d} {k.split('/')[1]}" for d, k in cols) + " |",
             "|" + "---|" * (len(cols) + 1)]
    for model in dict.fromkeys(r["model"] for r in combined):
        cells = [f"{r[k + '_mean']:.3f} [{r[k + '_min']:.3f}, {r[k + '_max']:.3f}]"
                 if (r := by.get((model, d))) and k + "_mean" in r else "" for d, k in cols]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    for dataset, per in gains(runs, key).items():
        for reading, deltas in per.items():
            worst = " (at or below base in some run)" if min(deltas) <= 0 else ""
            lines.append(f"\n{dataset} {reading}: final model - base per run: "
                         + ", ".join(f"{d:+.3f}" for d in deltas) + worst)
    return "\n".join(lines) + "\n"


def write_report(run_dirs: list[Path], out: Path) -> str:
    """seeds.csv, seeds.md and seeds.png in `out` from the runs' eval results; returns seeds.md."""
    from r1pipeline.plots import plot_seeds

    read = [read_run(p) for p in run_dirs]
    runs, labels = [rows for rows, _ in read], [label for _, label in read]
    combined = combine(runs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    columns = ["model", "dataset", "runs"] + [f"{k}_{s}" for k in VALUES for s in ("mean", "min", "max")]
    with (out / "seeds.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in combined)
    md = markdown(combined, runs, labels)
    (out / "seeds.md").write_text(md)
    plot_seeds(combined, headline_key(combined), out / "seeds.png", title=f"{len(runs)} runs: mean and range")
    return md


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m r1pipeline.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (or their eval directories)")
    parser.add_argument("--out", type=Path, required=True, help="where seeds.md, seeds.csv and seeds.png go")
    args = parser.parse_args(argv)
    md = write_report(args.runs, args.out)
    sys.stdout.write(f"{args.out}/seeds.md:\n{md}")  # the command's result


if __name__ == "__main__":
    main()
