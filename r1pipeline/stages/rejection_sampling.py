"""Rejection sampling: the SFT2 dataset from the reasoning-RL model (R1 section 2.3.3).

python -m r1pipeline stage=rejection_sampling run.dir=<run with reasoning_rl> [stage.samples_per_prompt=8]

Samples k completions per training prompt (batched), keeps only verified-correct ones, drops chains of thought with
mixed languages, code blocks or overlong paragraphs, dedupes, then mixes in non-reasoning examples (a configured
share of the final set: simple instruction/chat examples built offline, or a local file). Writes `dataset.jsonl`
(`messages` per row with provenance) and counts of what was kept and why the rest was dropped.
"""
from __future__ import annotations

import json
import logging
import random

from omegaconf import OmegaConf

from r1pipeline import sampling
from r1pipeline.data import build_dataset, draw_prompts, load_files
from r1pipeline.errors import ConfigError
from r1pipeline.processes import is_main_process
from r1pipeline.rejection_filter import RejectionFilter
from r1pipeline.rundir import StageFailed, execute_stage, input_model
from r1pipeline.sampling import open_engine, sample, sft_row, task_messages
from r1pipeline.typecheck import flag, number
from r1pipeline.verify import Verifier, check_verifier

log = logging.getLogger(__name__)

WORDS = ["river", "lantern", "orbit", "maple", "signal", "harbor", "pepper", "canvas", "glacier", "violin", "meadow",
         "copper", "falcon", "ribbon", "tunnel", "walnut"]


def builtin_non_reasoning(n: int, seed: int) -> list[dict]:
    """Simple instruction/chat pairs with exact answers and no chain of thought (R1 answers these directly)."""
    rng = random.Random(seed)
    tasks = [
        lambda w: (f"Write the word '{w[0]}' in capital letters.", w[0].upper()),
        lambda w: (f"Reverse the order of these words: {' '.join(w[:4])}", " ".join(reversed(w[:4]))),
        lambda w: (f"How many letters are in the word '{w[0]}'?", f"The word '{w[0]}' has {len(w[0])} letters."),
        lambda w: (f"Sort these words alphabetically: {', '.join(w[:3])}", ", ".join(sorted(w[:3]))),
        lambda w: (f"Greet someone called {w[0].title()} in one short sentence.",
                   f"Hello, {w[0].title()}! Nice to meet you."),
    ]
    rows = []
    for i in range(n):
        user, answer = tasks[i % len(tasks)](rng.sample(WORDS, 4))
        rows.append({"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]})
    return rows


def local_non_reasoning(nr_cfg, n: int) -> list[dict]:
    """Rows of a local file with `messages`, or alpaca-style `instruction` + `output` columns."""
    ds = load_files(OmegaConf.create({"source": "local", "path": nr_cfg.path}))
    if "messages" in ds.column_names:
        rows = [{"messages": r["messages"]} for r in ds]
    elif {"instruction", "output"} <= set(ds.column_names):
        rows = [{"messages": [{"role": "user", "content": r["instruction"]},
                              {"role": "assistant", "content": r["output"]}]} for r in ds]
    else:
        raise ConfigError(f"stage.non_reasoning.path: {nr_cfg.path} needs a `messages` column or `instruction` and "
                          f"`output` columns (it has {ds.column_names})")
    random.Random(nr_cfg.seed).shuffle(rows)
    return rows[:n]


def non_reasoning_rows(nr_cfg, n_reasoning: int) -> list[dict]:
    n = round(n_reasoning * nr_cfg.share / (1 - nr_cfg.share))
    rows = builtin_non_reasoning(n, nr_cfg.seed) if nr_cfg.source == "builtin" else local_non_reasoning(nr_cfg, n)
    return [{**r, "method": "non_reasoning", "source_model": nr_cfg.source if nr_cfg.source == "builtin"
             else nr_cfg.path, "score": None} for r in rows]


def check(cfg) -> None:
    """The stage block: sizes, the check, the filters, the non-reasoning share, the generation block, and a dataset
    with training rows."""
    stage = cfg.stage
    sampling.check_training_draw(cfg)
    f = stage.filters
    number(f.min_score, "stage.filters.min_score", example=1.0)
    number(f.min_language_share, "stage.filters.min_language_share", low=0, high=1, example=0.95)
    for key in ("mixed_language", "code_blocks", "dedupe"):
        flag(f[key], f"stage.filters.{key}")
    if f.max_paragraph_chars is not None:
        number(f.max_paragraph_chars, "stage.filters.max_paragraph_chars", low=1, integer=True, example=1500)
    nr = stage.non_reasoning
    if not isinstance(nr.share, (int, float)) or not 0 <= nr.share < 1:
        raise ConfigError(f"stage.non_reasoning.share: {nr.share!r} must be in [0, 1) (the share of the final set)")
    if nr.source not in ("builtin", "local") or (nr.source == "local" and not nr.path):
        raise ConfigError("stage.non_reasoning.source: use builtin, or local with stage.non_reasoning.path=<file>")


def sample_and_filter(cfg, engine, data, verifier, store=None) -> tuple[list[dict], dict, dict]:
    """k samples per prompt -> (kept rows, filter statistics, generation statistics); batches already sampled into
    `store` are read back (r1pipeline/sampling.py)."""
    stage = cfg.stage
    prompts = [r["prompt"] for r in data]
    sampled = sample(engine, prompts, stage.generation, stage.samples_per_prompt, cfg.seed, list(data), verifier,
                     store)
    keep = RejectionFilter(stage.filters)
    rows = [sft_row(row, s.response, "rejection_sampling", stage.inputs.model, s.score)
            for row, samples in zip(data, sampled.per_prompt) for s in samples
            if keep(task_messages(row["prompt"])[-1]["content"], s.response, s.score)]
    return rows, keep.stats(), sampled.stats


def run(cfg) -> dict:
    stage = cfg.stage
    model_path, random_init = input_model(cfg, stage.inputs.model)  # fails early: "run stage X first"
    data = draw_prompts(build_dataset(cfg.dataset, cfg.model.path)["train"], stage.num_prompts, cfg.seed, stage.name)
    check_verifier(stage.verify, set(data.column_names))  # the columns it reads, before the model loads

    def work(out):
        with open_engine(cfg, model_path, random_init) as engine:
            rows, filtered, generation = sample_and_filter(cfg, engine, data, Verifier(stage.verify), out / "batches")
        log.info("rejection sampling kept %d of %d samples; dropped %s", filtered["kept"], filtered["samples"],
                 filtered["dropped"])
        if not rows:
            raise StageFailed(f"stage rejection_sampling kept no sample ({filtered}); sample more "
                              f"(stage.samples_per_prompt, stage.num_prompts) or loosen stage.filters",
                              {"filter": filtered})
        extra = non_reasoning_rows(stage.non_reasoning, len(rows))
        dataset = out / "dataset.jsonl"
        if is_main_process():
            dataset.write_text("".join(json.dumps(r) + "\n" for r in rows + extra))
        metrics = {"rows": len(rows) + len(extra), "reasoning_rows": len(rows), "non_reasoning_rows": len(extra),
                   "filter": filtered, "generation": generation}
        return {"outputs": {"dataset": str(dataset)}, "metrics": metrics}

    return execute_stage(cfg, {"model": model_path, "dataset": cfg.dataset.name}, work)
