"""Eval: pass@1 and maj@k on the dataset's held-out `test` split for the base model and every stage model of the run.

python -m r1pipeline stage=eval run.dir=<run> [stage.models=[base,sft2]] [stage.k=8] [stage.num_prompts=100]

Writes results.md and results.csv (one row per model), scores.png (bars), curves.png (reward, completion length and
loss per training stage, from each stage's metrics.jsonl) and samples.jsonl.
"""
from __future__ import annotations

import csv
import json
import logging

from r1pipeline.config import validate
from r1pipeline.data import build_dataset
from r1pipeline.errors import ConfigError
from r1pipeline.evaluation import evaluate
from r1pipeline.plots import plot_eval_scores, plot_stage_comparison
from r1pipeline.processes import is_main_process
from r1pipeline.rundir import execute_stage, input_model, read_manifest, stage_dir
from r1pipeline.sampling import open_engine
from r1pipeline.verify import Verifier, check_verifier

log = logging.getLogger(__name__)
# Training stages in pipeline order; their models are compared when `stage.models` is null.
MODEL_STAGES = ("r1_zero", "sft1", "reasoning_rl", "sft2")
COLUMNS = ("model", "path", "pass@1", "maj@k", "mean_score", "mean_length", "tokens_per_s", "bound_tokens_per_s")


def models_to_evaluate(cfg) -> list[str]:
    """`stage.models`, or base plus every training stage of this run whose manifest says complete."""
    if cfg.stage.models:
        return list(cfg.stage.models)
    done = [s for s in MODEL_STAGES
            if (m := read_manifest(stage_dir(cfg, s))) and m.get("status") == "complete" and "model" in m["outputs"]]
    return ["base", *done]


def markdown_table(rows: list[dict], k: int) -> str:
    head = ["model", "pass@1", f"maj@{k}", "mean score", "mean length (tokens)", "tokens/s",
            "bandwidth-bound tokens/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append(f"| {r['model']} | {r['pass@1']:.3f} | {r['maj@k']:.3f} | {r['mean_score']:.3f} | "
                     f"{r['mean_length']:.1f} | {r['tokens_per_s']:.1f} | {r['bound_tokens_per_s']:.0f} |")
    return "\n".join(lines) + "\n"


def write_tables(out, rows: list[dict], k: int) -> None:
    with (out / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    (out / "results.md").write_text(markdown_table(rows, k))


def write_outputs(out, rows: list[dict], samples: list[dict], k: int, cfg, names: list[str]) -> None:
    """results.md/.csv, samples.jsonl, scores.png and curves.png (the main process's job)."""
    write_tables(out, rows, k)
    (out / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    plot_eval_scores(rows, out / "scores.png", title=f"{cfg.dataset.name} test, k={k}")
    curves = {s: stage_dir(cfg, s) / "metrics.jsonl" for s in names if s != "base"}
    plot_stage_comparison(curves, out / "curves.png", title="training curves per stage")


def run(cfg) -> dict:
    validate(cfg)
    stage = cfg.stage
    if stage.k < 1 or stage.num_prompts < 1:
        raise ConfigError("stage.k and stage.num_prompts: must be at least 1")
    names = models_to_evaluate(cfg)
    paths = {name: input_model(cfg, name, "models") for name in names}  # fails early: "run stage X first"
    data = build_dataset(cfg.dataset)["test"]
    data = data.select(range(min(stage.num_prompts, len(data))))
    check_verifier(stage.verify, set(data.column_names))
    inputs = {"models": {n: p for n, (p, _) in paths.items()}, "dataset": cfg.dataset.name, "prompts": len(data)}

    def work(out):
        verifier, rows, samples, generation = Verifier(stage.verify), [], [], {}
        for name, (path, random_init) in paths.items():
            with open_engine(cfg, path, random_init) as engine:
                metrics, model_samples, generation[name] = evaluate(engine, data, verifier, stage.generation,
                                                                    stage.k, stage.min_score, cfg.seed)
            rows.append({"model": name, "path": path, **{k: round(v, 4) for k, v in metrics.items()}})
            samples += [{"model": name, **s} for s in model_samples]
            log.info("eval %s: pass@1 %.3f maj@%d %.3f (mean length %.0f)", name, metrics["pass@1"], stage.k,
                     metrics["maj@k"], metrics["mean_length"])
        if is_main_process():
            write_outputs(out, rows, samples, stage.k, cfg, names)
        table = markdown_table(rows, stage.k)
        log.info("eval results (%s test split, %d prompts, k=%d):\n%s", cfg.dataset.name, len(data), stage.k, table)
        return {"outputs": {"table": str(out / "results.md"), "csv": str(out / "results.csv")},
                "metrics": {r["model"]: {k: r[k] for k in COLUMNS[2:]} for r in rows}, "table": table,
                "generation": generation}

    return execute_stage(cfg, inputs, work)
