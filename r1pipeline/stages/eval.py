"""Eval: held-out pass@1 (greedy and sampled) and maj@k, strict and format-free, each with a 95% interval over
prompts, for the base model and every stage model of the run, on one or several benchmarks.

python -m r1pipeline stage=eval run.dir=<run> [stage.inputs.models=[base,sft2]] [stage.datasets=[countdown,basic_arithmetic]]
  [stage.k=8] [stage.greedy=false] [stage.num_prompts=200]

Writes results.md (one table: a row per model, a column group per benchmark, then a generation table), results.csv
(a row per model and benchmark, every score with its interval bounds), samples.jsonl (every answer with both
verification scores and the answers each reading found), stages.png (pass@1 per stage with its interval, strict
and format-free, beside the reward curves of the RL stages) and curves.png (every training stage's curves); sends
the scores to the tracker (r1pipeline/tracking.py). The metric definitions are in r1pipeline/evaluation.py, the
benchmarks in r1pipeline/benchmarks.py.
"""
from __future__ import annotations

import csv
import json
import logging

from r1pipeline import benchmarks, sampling, tracking
from r1pipeline.errors import ConfigError
from r1pipeline.evaluation import READINGS, evaluate, score_columns
from r1pipeline.plots import plot_stage_comparison, plot_stages
from r1pipeline.processes import is_main_process
from r1pipeline.rundir import execute_stage, input_model, read_manifest, stage_dir
from r1pipeline.sampling import open_engine
from r1pipeline.stages import producers, running
from r1pipeline.typecheck import flag, number

log = logging.getLogger(__name__)
COLUMNS = ("model", "dataset", "path", "prompts", "k", *score_columns(), "mean_length", "tokens_per_s",
           "bound_tokens_per_s")


def check(cfg) -> None:
    """Eval scores something (a greedy pass, k samples, or both), with a usable bootstrap, on benchmarks that compose
    and whose check reads answers strictly and format-free (r1pipeline/benchmarks.py); the base model loads when no
    list of models is given (base is then evaluated first)."""
    from r1pipeline.models import check_model_path

    s = cfg.stage
    if not isinstance(s.k, int) or isinstance(s.k, bool) or s.k < 0:
        raise ConfigError(f"stage.k: {s.k!r} must be a number of samples per prompt, 0 (no sampling) or more")
    flag(s.greedy, "stage.greedy")
    if s.k == 0 and not s.greedy:
        raise ConfigError("stage.k: 0 with stage.greedy=false leaves nothing to score; set stage.greedy=true (one "
                          "greedy answer per prompt) or stage.k to 1 or more (sampled answers per prompt)")
    number(s.num_prompts, "stage.num_prompts", low=1, integer=True, example=50)
    number(s.min_score, "stage.min_score", example=1.0)
    if not isinstance(s.bootstrap.resamples, int) or s.bootstrap.resamples < 100:
        raise ConfigError(f"stage.bootstrap.resamples: {s.bootstrap.resamples!r} is too few for a 95% interval; "
                          f"use 1000 or more (2000 is the default)")
    if not s.inputs.models:
        check_model_path(cfg.model.path)
    sampling.check(cfg)
    benchmarks.check(cfg)


def models_to_evaluate(cfg) -> list[str]:
    """`stage.inputs.models`, or base plus every training stage of this run whose manifest says complete."""
    if cfg.stage.inputs.models:
        return list(cfg.stage.inputs.models)
    done = [s for s in producers("model")  # the training stages, in pipeline order (r1pipeline/stages: STAGES)
            if (m := read_manifest(stage_dir(cfg, s))) and m.get("status") == "complete" and "model" in m["outputs"]]
    return ["base", *done]


def score_headers(stage, bench: str, prefix: bool) -> list[tuple[str, str]]:
    """(header, score key) of a benchmark's column group: greedy first, then sampled pass@1 and maj@k."""
    scores = ([("greedy pass@1", "greedy")] if stage.greedy else []) + (
        [(f"pass@1 (k={stage.k})", "pass@1"), (f"maj@{stage.k}", "maj@k")] if stage.k else [])
    lead = f"{bench} " if prefix else ""
    return [(f"{lead}{title} {reading}", f"{key}/{reading}") for title, key in scores for reading in READINGS]


def cell(row: dict | None, key: str) -> str:
    if row is None or key not in row:
        return ""
    return f"{row[key]:.3f} [{row[key + '_lo']:.3f}, {row[key + '_hi']:.3f}]"


def caption(stage, benches: list) -> str:
    """What the table measures: prompts, passes, the two readings and the interval methods."""
    g = stage.generation
    runs = "; ".join(f"{b.name}: {len(b.data)} test prompts" for b in benches)
    sampled = f"k={stage.k} samples (temperature {g.temperature}, top_p {g.top_p})"
    passes = " and ".join((["greedy (temperature 0)"] if stage.greedy else []) + ([sampled] if stage.k else []))
    wilson = ((["greedy pass@1"] if stage.greedy else []) + ([f"maj@{stage.k}"] if stage.k else [])
              + (["pass@1"] if stage.k == 1 else []))
    boot = (f"; pass@1 (a mean of per-prompt shares): bootstrap over prompts ({stage.bootstrap.resamples} resamples, "
            f"seed {stage.bootstrap.seed}; Wilson at the mean where every prompt has the same share)")
    methods = f"{', '.join(wilson)}: Wilson" + (boot if stage.k > 1 else "")
    return (f"Held-out scores per model ({runs}); {passes}, at most {g.max_new_tokens} new tokens. "
            f"strict: the dataset's check on the answer of a response in R1 format (answer_from: strict); free: the "
            f"same check on the response's final answer wherever it stands (answer_from: anywhere). "
            f"95% intervals over prompts in brackets: {methods}.\n\n")


def markdown_tables(rows: list[dict], stage, benches: list) -> str:
    """The scores table (a row per model, a column group per benchmark) and the generation table."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    by = {(r["model"], r["dataset"]): r for r in rows}
    groups = [(b.name, score_headers(stage, b.name, len(benches) > 1)) for b in benches]
    head = ["model", *(h for _, hs in groups for h, _ in hs)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join([m, *(cell(by.get((m, b)), k) for b, hs in groups for _, k in hs)]) + " |"
              for m in models]
    gen = ["model", *(f"{b.name} {h}" if len(benches) > 1 else h for b in benches
                      for h in ("mean length (tokens)", "tokens/s", "bandwidth-bound tokens/s"))]
    lines += ["", "| " + " | ".join(gen) + " |", "|" + "---|" * len(gen)]
    for m in models:
        cells = [(f"{r['mean_length']:.1f}", f"{r['tokens_per_s']:.1f}", f"{r['bound_tokens_per_s']:.0f}")
                 if (r := by.get((m, b.name))) else ("", "", "") for b in benches]
        lines.append("| " + " | ".join([m, *(c for cs in cells for c in cs)]) + " |")
    return caption(stage, benches) + "\n".join(lines) + "\n"


def headline(rows: list[dict], stage) -> dict:
    """The sweep summary's eval score: the last model's strict (and format-free) pass@1 on the first benchmark,
    greedy when there is a greedy pass."""
    key = "greedy" if stage.greedy else "pass@1"
    last = [r for r in rows if r["dataset"] == rows[0]["dataset"]][-1]
    return {"eval_score": last[f"{key}/strict"], "eval_score_free": last[f"{key}/free"],
            "eval_score_of": f"{last['model']} {key} pass@1 on {last['dataset']} (strict; _free: format-free)"}


def write_outputs(out, rows: list[dict], samples: list[dict], table: str, cfg) -> None:
    """results.md/.csv, samples.jsonl, stages.png and curves.png (the main process's job)."""
    with (out / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in rows)
    (out / "results.md").write_text(table)
    (out / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    names = list(dict.fromkeys(r["model"] for r in rows))
    rl = {s: stage_dir(cfg, s) / "metrics.jsonl" for s in running("grpo") if s in names}  # the RL stages
    plot_stages(rows, rl, out / "stages.png", title=f"held-out pass@1 per stage ({cfg.run.dir})")
    curves = {s: stage_dir(cfg, s) / "metrics.jsonl" for s in names if s != "base"}
    plot_stage_comparison(curves, out / "curves.png", title="training curves per stage")


def run(cfg) -> dict:
    stage = cfg.stage
    names = models_to_evaluate(cfg)
    paths = {name: input_model(cfg, name, "inputs.models") for name in names}  # fails early: "run stage X first"
    benches = benchmarks.load(cfg)  # every benchmark's rows and check, before any model loads
    inputs = {"models": {n: p for n, (p, _) in paths.items()}, "datasets": {b.name: len(b.data) for b in benches}}

    def work(out):
        rows, samples, generation = [], [], {}
        for name, (path, random_init) in paths.items():
            with open_engine(cfg, path, random_init) as engine:
                for bench in benches:
                    row, bench_samples, generation.setdefault(name, {})[bench.name] = evaluate(
                        engine, bench, stage, cfg.seed, out / "batches" / name / bench.name)
                    rows.append({"model": name, "path": path, **row})
                    samples += [{"model": name, **s} for s in bench_samples]
                    log.info("eval %s on %s: %s", name, bench.name, ", ".join(
                        f"{k} {row[k]:.3f}" for k in score_columns() if k in row and not k.endswith(("_lo", "_hi"))))
        table = markdown_tables(rows, stage, benches)
        if is_main_process():
            write_outputs(out, rows, samples, table, cfg)
            tracking.log_eval(cfg, out, rows, table)
        log.info("eval results:\n%s", table)
        metrics = {m: {r["dataset"]: {k: v for k, v in r.items() if k not in ("model", "dataset", "path")}
                       for r in rows if r["model"] == m} for m in names}
        return {"outputs": {"table": str(out / "results.md"), "csv": str(out / "results.csv"),
                            "plot": str(out / "stages.png")},
                "metrics": metrics, "table": table, "generation": generation, **headline(rows, stage)}

    return execute_stage(cfg, inputs, work)
