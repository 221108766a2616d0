"""Any reasoning-gym task scored by the task's own verifier."""
from __future__ import annotations

import json
from functools import lru_cache

from r1pipeline.rewards.registry import register
from r1pipeline.rewards.text import check_answer_from, final_answers

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
    `metadata`): `reasoning_gym.get_score_answer_fn(task)(answer, entry)`. The answer is read as `answer_from`
    says (`text.final_answers`): `tags` (default) the last `<answer>` block, `strict` only from a response in R1
    format, `anywhere` format-free (else the last `\\boxed{}` or number); no answer -> the verifier sees None.
    Scores are the task's: mostly 1.0 right / 0.0 wrong, some tasks give partial credit (Countdown: 1.0 / 0.05 /
    0.01; the default scorer: len(reference) / len(answer) when the answer merely contains the reference, so
    "<answer>7, -4</answer>" earns 0.4 against "-4"). Range [0, 1].
    Example (basic_arithmetic, "Calculate 5 - 3 - 6.", answer "-4"): "<answer>-4</answer>" -> 1.0;
    "<answer>4</answer>" -> 0.0.
    """

    required_columns = ("task", "answer", "metadata")

    def __init__(self, answer_from: str = "tags"):
        self.answer_from = check_answer_from(answer_from, "reasoning_gym")

    def answers(self, completions, prompts=None) -> list[str | None]:
        """The answer this reward reads from each response (what it scores)."""
        return final_answers(completions, prompts, self.answer_from)

    def __call__(self, completions, task, answer, metadata, prompts=None, question=None, **kwargs) -> list[float]:
        question = question if question is not None else [""] * len(completions)
        given = self.answers(completions, prompts)
        return [float(score_fn(t)(g[:MAX_ANSWER_CHARS] if g is not None else None, entry_of(q, ref, meta)))
                for g, t, ref, meta, q in zip(given, task, answer, metadata, question)]
