"""pass@1 and maj@k of one model on held-out prompts, as R1 reports them.

pass@1 = mean over prompts of the fraction of the k samples that verify (score >= min_score);
maj@k  = mean over prompts of whether the most frequent extracted answer among the k samples verifies
         (a sample without an answer block never wins the vote; ties go to the answer seen first).
"""
from __future__ import annotations

from collections import Counter

from r1pipeline.rewards.text import extract_answer
from r1pipeline.sampling import sample


def answer_key(response: str) -> str | None:
    answer = extract_answer(response)
    return " ".join(answer.lower().split()) if answer else None


def pass_and_majority(scores: list[list[float]], keys: list[list[str | None]], min_score: float) -> dict:
    """Scores and answer keys, [num_prompts][k] each -> {"pass@1", "maj@k", "mean_score"}."""
    passes, majority, means = [], [], []
    for s, a in zip(scores, keys):
        correct = [x >= min_score for x in s]
        passes.append(sum(correct) / len(correct))
        means.append(sum(s) / len(s))
        votes = Counter(x for x in a if x is not None)
        if votes:
            top = max(votes, key=lambda x: (votes[x], -a.index(x)))
            majority.append(float(correct[a.index(top)]))
        else:
            majority.append(0.0)
    n = len(passes) or 1
    return {"pass@1": sum(passes) / n, "maj@k": sum(majority) / n, "mean_score": sum(means) / n}


def evaluate(engine, data, verifier, gen_cfg, k: int, min_score: float, seed: int) -> tuple[dict, list[dict], dict]:
    """Sample k answers per held-out prompt and score them (r1pipeline/sampling.py, split across processes);
    returns (metrics, per-sample rows, generation statistics) on every process."""
    prompts = [r["prompt"] for r in data]
    sampled = sample(engine, prompts, gen_cfg, k, seed, list(data), verifier)
    scores = [[s.score for s in samples] for samples in sampled.per_prompt]
    keys = [[answer_key(s.response) for s in samples] for samples in sampled.per_prompt]
    rows = [{"answer": row["answer"], "response": s.response, "score": s.score, "tokens": s.tokens}
            for row, samples in zip(data, sampled.per_prompt) for s in samples]
    metrics = pass_and_majority(scores, keys, min_score)
    metrics["mean_length"] = sum(r["tokens"] for r in rows) / max(1, len(rows))
    metrics["tokens_per_s"] = sampled.stats["tokens_per_s"]
    metrics["bound_tokens_per_s"] = sampled.stats["bound_tokens_per_s"]
    return metrics, rows, sampled.stats
