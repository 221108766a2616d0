"""What makes R1-Zero learn on the embedded 135M model: one row per tried setting, each with its command, its wall time
and the held-out greedy pass@1 it ended at (issue 21, "Learn why, and keep it").

    python bench/r1_zero_levers.py --name g16x2 --steps 40 -- stage.trainer.num_generations=16 \\
        stage.trainer.per_device_train_batch_size=32
    python bench/r1_zero_levers.py --table        # bench/results/r1_zero_levers.md from the rows so far

Each row runs, one after the other in subprocesses on this machine:
1. R1-Zero from the base model: `python -m r1pipeline <the main job's config> stage.trainer.max_steps=STEPS
   stage.trainer.eval_strategy=no <overrides>` (the main job's sizes on hardware=cpu, conf/shape/r1_zero_cpu.yaml, with
   the overrides on top; no evaluation during training, so the row's wall time is the training's);
2. `stage=eval` on the trained model: greedy, the first 200 prompts of the dataset's test split (never trained on),
   64 new tokens, strict (R1 format and the task's verifier) and format-free, with Wilson 95% intervals.
The row (bench/results/r1_zero_levers.jsonl) keeps both commands, the wall times, the machine's load while it ran,
the package versions, the training log's last line and the eval numbers. Rows are appended, never rewritten.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROWS = ROOT / "bench" / "results" / "r1_zero_levers.jsonl"
TABLE = ROOT / "bench" / "results" / "r1_zero_levers.md"
EVAL = ["stage=eval", "stage.inputs.models=[r1_zero]", "stage.num_prompts=200", "stage.greedy=true", "stage.k=0",
        "stage.generation.max_new_tokens=64", "stage.generation.batch_size=100", "tracking=none"]
VERSIONS = ("torch", "transformers", "trl", "accelerate", "datasets", "reasoning-gym")


def run(cmd: list[str], log: Path) -> tuple[int, float]:
    t0 = time.time()
    with log.open("w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ,
                            "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}).returncode
    return rc, time.time() - t0


def dataset_overrides(overrides: list[str]) -> list[str]:
    """The overrides the eval must share with training: which data the test prompts come from."""
    return [o for o in overrides if o.lstrip("+~").startswith(("dataset", "seed="))]


def last_step_line(log: Path) -> str:
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if "step " in ln and " | reward " in ln]
    return lines[-1].split("step ", 1)[-1][:400] if lines else ""


def eval_numbers(run_dir: Path) -> dict:
    with (run_dir / "eval" / "results.csv").open() as f:
        (row,) = [r for r in csv.DictReader(f) if r["model"] == "r1_zero"]
    keys = ("greedy/strict", "greedy/free", "mean_length")
    out = {k: float(row[k]) for k in keys}
    for k in keys[:2]:
        out[f"{k}_ci"] = [float(row[f"{k}_lo"]), float(row[f"{k}_hi"])]
    out["prompts"] = int(row["prompts"])
    return out


def one_row(name: str, steps: int, overrides: list[str], out: Path, seed: int) -> dict:
    run_dir = out / name
    train = [sys.executable, "-m", "r1pipeline", f"run.dir={run_dir}", "tracking=none", f"seed={seed}",
             f"stage.trainer.max_steps={steps}", "stage.trainer.eval_strategy=no", "stage.trainer.save_steps=1000",
             *overrides]
    evaluate = [sys.executable, "-m", "r1pipeline", f"run.dir={run_dir}", f"seed={seed}", *EVAL,
                *dataset_overrides(overrides)]
    load = os.getloadavg()[0]
    rc, train_s = run(train, out / f"{name}.train.log")
    row = {"name": name, "steps": steps, "overrides": overrides, "seed": seed, "train_rc": rc,
           "train_s": round(train_s, 1), "load_before": round(load, 2),
           "train_cmd": " ".join(["python", *train[1:]]), "eval_cmd": " ".join(["python", *evaluate[1:]]),
           "last_step": last_step_line(out / f"{name}.train.log")}
    if rc == 0:
        rc, eval_s = run(evaluate, out / f"{name}.eval.log")
        row.update(eval_rc=rc, eval_s=round(eval_s, 1), **(eval_numbers(run_dir) if rc == 0 else {}))
    row.update(load_after=round(os.getloadavg()[0], 2), cpus=os.cpu_count(), machine=platform.processor() or
               platform.machine(), date=time.strftime("%Y-%m-%d %H:%M"),
               versions={p: metadata.version(p) for p in VERSIONS})
    return row


def table(rows: list[dict]) -> str:
    head = ("| row | steps | overrides (on the main job's config) | greedy strict [95%] | greedy free [95%] | "
            "mean length | train wall (load) |\n|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        if "greedy/strict" not in r:
            lines.append(f"| {r['name']} | {r['steps']} | `{' '.join(r['overrides'])}` | failed | | | |")
            continue
        s, f = r["greedy/strict"], r["greedy/free"]
        lines.append(f"| {r['name']} | {r['steps']} | `{' '.join(r['overrides']) or '(none)'}` | {s:.3f} "
                     f"[{r['greedy/strict_ci'][0]:.3f}, {r['greedy/strict_ci'][1]:.3f}] | {f:.3f} "
                     f"[{r['greedy/free_ci'][0]:.3f}, {r['greedy/free_ci'][1]:.3f}] | {r['mean_length']:.1f} | "
                     f"{r['train_s'] / 60:.1f} min ({r['load_before']:.1f}) |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--name")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", type=Path, default=Path("/tmp/r1_zero_levers"))
    p.add_argument("--table", action="store_true", help="write bench/results/r1_zero_levers.md and stop")
    p.add_argument("overrides", nargs="*")
    a = p.parse_args(argv)
    rows = [json.loads(ln) for ln in ROWS.read_text().splitlines()] if ROWS.exists() else []
    if not a.table:
        a.out.mkdir(parents=True, exist_ok=True)
        row = one_row(a.name, a.steps, a.overrides, a.out, a.seed)
        with ROWS.open("a") as f:
            f.write(json.dumps(row) + "\n")
        rows.append(row)
        print(json.dumps(row, indent=1))
    TABLE.write_text(table(rows))


if __name__ == "__main__":
    main()
