"""Scores of one model on one benchmark, each with a 95% interval over prompts.

Every sample is verified under two readings of its answer, by the benchmark's one check (`stage.verify`, through
`verify.Verifiers`, the class training rewards with):

  strict = the answer only from a response in R1 format (non-empty think block, then the answer block; `strict`);
  free   = the response's final answer wherever it stands (format-free; `anywhere`).

A sample is correct when its score reaches `min_score`. For each reading:

  greedy pass@1  = share of prompts whose one greedy answer (temperature 0) is correct;
  pass@1         = mean over prompts of the share of the k sampled answers that are correct;
  maj@k          = share of prompts whose majority answer among the k is correct; votes by verified equivalence
                   (r1pipeline/voting.py).

95% intervals over prompts: greedy pass@1 and maj@k are one 0/1 per prompt: Wilson score interval. Sampled pass@1
is a mean of per-prompt shares when k > 1: percentile bootstrap over prompts (seeded resamples), except where every
prompt has the same share (e.g. none solved), which a bootstrap cannot see vary: Wilson at the mean share; with
k = 1 it is 0/1 per prompt again: Wilson.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from r1pipeline.rewards.text import final_answers
from r1pipeline.sampling import sample
from r1pipeline.voting import majority_correct

READINGS = {"strict": "strict", "free": "anywhere"}  # column name: answer_from
SCORES = ("greedy", "pass@1", "maj@k")
Z95 = 1.959963984540054  # the standard normal's 97.5% quantile


def score_columns() -> list[str]:
    """Every score column with its interval, in table order: greedy first, strict before free."""
    return [f"{s}/{r}{end}" for s in SCORES for r in READINGS for end in ("", "_lo", "_hi")]


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion successes / n (n = 0: the whole range)."""
    if n == 0:
        return 0.0, 1.0
    p, z2 = successes / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # at p = 0 (1) the lower (upper) bound is exactly 0 (1); rounding must not put it on the wrong side of p
    return (0.0 if p <= 0 else max(0.0, min(p, centre - half)), 1.0 if p >= 1 else min(1.0, max(p, centre + half)))


def bootstrap(values: list[float], resamples: int, seed: int, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (one per prompt), prompts drawn with replacement."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return 0.0, 1.0
    draws = np.random.default_rng(seed).integers(0, len(x), size=(resamples, len(x)))  # [resamples, prompts]
    means = x[draws].mean(axis=1)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)


def interval(per_prompt: list[float], binary: bool, resamples: int, seed: int) -> dict:
    """{"": mean, "_lo", "_hi"}: Wilson when every value is 0 or 1 (`binary`), else bootstrap. Where every prompt
    scored the same (all 0: nothing solved), resampling prompts cannot vary the mean and the bootstrap would claim a
    zero-width interval; then Wilson's over prompts at the mean share (a [0, 1] value varies at most as a 0/1 one)."""
    mean = sum(per_prompt) / len(per_prompt) if per_prompt else 0.0
    if binary or len(set(per_prompt)) <= 1:
        lo, hi = wilson(mean * len(per_prompt), len(per_prompt))
    else:
        lo, hi = bootstrap(per_prompt, resamples, seed)
    return {"": mean, "_lo": lo, "_hi": hi}


def score_pass(name: str, per_prompt, prompts, min_score: float, voter, bootstrap_cfg) -> tuple[dict, dict]:
    """The scores of one pass (`greedy`: one sample per prompt, `sampled`: k) under both readings, and each sample's
    answers ({(prompt, index): {reading: answer}})."""
    row, answers = {}, {}
    k = len(per_prompt[0]) if per_prompt else 0
    for reading, answer_from in READINGS.items():
        correct = [[s.score[reading] >= min_score for s in samples] for samples in per_prompt]
        given = [final_answers([s.text for s in samples], [prompts[p]] * len(samples), answer_from, voter.kind)
                 for p, samples in enumerate(per_prompt)]
        for p, samples in enumerate(per_prompt):
            for s, a in zip(samples, given[p]):
                answers.setdefault((p, s.index), {})[reading] = a
        shares = [sum(c) / len(c) for c in correct]
        scores = {"greedy": shares} if name == "greedy" else {
            "pass@1": shares, "maj@k": [float(majority_correct(a, c, voter)) for a, c in zip(given, correct)]}
        for score, values in scores.items():
            binary = score != "pass@1" or k == 1
            for end, v in interval(values, binary, bootstrap_cfg.resamples, bootstrap_cfg.seed).items():
                row[f"{score}/{reading}{end}"] = v
    return row, answers


def combined_speed(stats: list[dict]) -> dict:
    """Tokens/s over the passes of one model on one benchmark, beside the bandwidth bound (0 when not known)."""
    tokens = sum(s["new_tokens"] for s in stats)
    wall = sum(s["wall_s"] for s in stats)
    bound_s = sum(s["new_tokens"] / s["bound_tokens_per_s"] for s in stats if s["bound_tokens_per_s"])
    return {"tokens_per_s": tokens / wall if wall else 0.0, "bound_tokens_per_s": tokens / bound_s if bound_s else 0.0}


def evaluate(engine, bench, stage, seed: int, store=None) -> tuple[dict, list[dict], dict]:
    """Greedy (`stage.greedy`) and k sampled answers (`stage.k`) per held-out prompt of `bench` (a
    benchmarks.Benchmark), verified and scored; returns (table row, per-sample rows, generation statistics per pass),
    the same on every process (sampling is split across processes in r1pipeline/sampling.py). With a `store`
    directory each pass keeps its batches in `store/<pass>` and reads back those already there."""
    data = list(bench.data)
    prompts = [r["prompt"] for r in data]
    greedy = OmegaConf.merge(stage.generation, {"temperature": 0.0})
    passes = ([("greedy", greedy, 1)] if stage.greedy else []) + ([("sampled", stage.generation, stage.k)]
                                                                    if stage.k else [])
    row = {"dataset": bench.name, "prompts": len(data), "k": stage.k}
    samples, generation, tokens = [], {}, []
    for name, gen_cfg, n in passes:
        sampled = sample(engine, prompts, gen_cfg, n, seed, data, bench.verifiers,
                         None if store is None else Path(store) / name)
        generation[name] = sampled.stats
        scores, answers = score_pass(name, sampled.per_prompt, prompts, stage.min_score, bench.voter, stage.bootstrap)
        row.update(scores)
        for s in (s for per in sampled.per_prompt for s in per):
            tokens.append(s.tokens)
            # TinyZero's Countdown rows have no reference answer (the check reads nums and target)
            samples.append({"dataset": bench.name, "pass": name, "prompt": s.prompt,
                            "answer": data[s.prompt].get("answer"),
                            "response": s.response, "tokens": s.tokens, "score": s.score,
                            "given": answers[(s.prompt, s.index)]})
    row["mean_length"] = sum(tokens) / max(1, len(tokens))
    row.update(combined_speed(list(generation.values())))
    return row, samples, generation
