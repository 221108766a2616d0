"""pass@1 and maj@k of one model on held-out prompts, as R1 reports them.

pass@1 = mean over prompts of the fraction of the k samples that verify (score >= min_score);
maj@k  = mean over prompts of whether the most frequent extracted answer among the k samples verifies
         (a sample without an answer block never wins the vote; ties go to the answer seen first).
"""
from __future__ import annotations

from collections import Counter

from r1pipeline.generation import generate_with
from r1pipeline.rewards.text import extract_answer, prefill_text


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


def evaluate(model, tok, data, verifier, gen_cfg, k: int, min_score: float, seed: int,
             rollout=None) -> tuple[dict, list[dict]]:
    """Sample k answers per held-out prompt and score them; returns (metrics, per-sample rows)."""
    prompts = [r["prompt"] for r in data]
    gens = generate_with(model, tok, prompts, gen_cfg, k, seed, rollout)
    scores, keys, samples = [], [], []
    for row, prompt, texts, lengths in zip(data, prompts, gens.texts, gens.num_tokens):
        s = verifier.score([prompt] * len(texts), texts, [row] * len(texts))
        responses = [prefill_text(prompt) + t for t in texts]
        scores.append(s)
        keys.append([answer_key(r) for r in responses])
        samples += [{"answer": row["answer"], "response": r, "score": x, "tokens": n}
                    for r, x, n in zip(responses, s, lengths)]
    metrics = pass_and_majority(scores, keys, min_score)
    metrics["mean_length"] = sum(map(sum, gens.num_tokens)) / max(1, sum(map(len, gens.num_tokens)))
    metrics["tokens_per_s"] = gens.stats["tokens_per_s"]
    metrics["bound_tokens_per_s"] = gens.stats["bound_tokens_per_s"]
    return metrics, samples
