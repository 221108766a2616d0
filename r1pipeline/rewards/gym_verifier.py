"""Any reasoning-gym task scored by the task's own verifier."""
from __future__ import annotations

import json
from functools import lru_cache

from r1pipeline.rewards.registry import register
from r1pipeline.rewards.text import extract_answer, responses

MAX_ANSWER_CHARS = 2_000  # verifiers are written for short answers; a longer block is cut before scoring


@lru_cache(maxsize=None)
def score_fn(task: str):
    """reasoning-gym's `score_answer(answer, entry)` for `task`, built once per process (kept out of the reward
    instance so the reward pickles)."""
    import reasoning_gym

    return reasoning_gym.get_score_answer_fn(task)


def entry_of(question, answer, metadata) -> dict:
    """The reasoning-gym entry a verifier expects, from our row (metadata is stored as a JSON string)."""
    meta = json.loads(metadata) if isinstance(metadata, str) else dict(metadata or {})
    return {"question": question, "answer": answer, "metadata": meta}


@register("reasoning_gym")
class ReasoningGymReward:
    """The task's own verifier for rows built from any reasoning-gym dataset (columns `task`, `answer`,
    `metadata`): `reasoning_gym.get_score_answer_fn(task)(answer_block, entry)`. The answer is the last `<answer>`
    block (no block -> the verifier sees None). Scores are the task's: mostly 1.0 right / 0.0 wrong, some tasks give
    partial credit (Countdown: 1.0 / 0.05 / 0.01). Range [0, 1].
    Example (basic_arithmetic, "Calculate 5 - 3 - 6.", answer "-4"): "<answer>-4</answer>" -> 1.0;
    "<answer>4</answer>" -> 0.0.
    """

    required_columns = ("task", "answer", "metadata")

    def __call__(self, completions, task, answer, metadata, prompts=None, question=None, **kwargs) -> list[float]:
        question = question if question is not None else [""] * len(completions)
        out = []
        for text, t, ref, meta, q in zip(responses(completions, prompts), task, answer, metadata, question):
            block = extract_answer(text)
            given = block[:MAX_ANSWER_CHARS] if block is not None else None
            score = score_fn(t)(given, entry_of(q, ref, meta))
            out.append(float(score))
        return out
