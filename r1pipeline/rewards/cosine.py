"""`cosine`: length-scaled correctness (Yeo et al. 2025), correctness from `accuracy`."""
from __future__ import annotations

import math

from r1pipeline.errors import ConfigError
from r1pipeline.rewards.accuracy import AccuracyReward
from r1pipeline.rewards.registry import register
from r1pipeline.rewards.text import completion_text


def completion_lengths(completions, completion_ids=None) -> list[int]:
    """Tokens per completion when TRL gives `completion_ids`, else characters (standalone use and tests)."""
    if completion_ids is not None and len(completion_ids) == len(completions):
        return [len(ids) for ids in completion_ids]
    return [len(completion_text(c)) for c in completions]


@register("cosine")
class CosineReward:
    """Length-scaled correctness (Yeo et al. 2025, "Demystifying Long CoT Reasoning"): correct answers score more
    the shorter they are; wrong answers are penalized less the longer they are (more thinking is encouraged when
    wrong). With p = min(L, max_len) / max_len, L the completion length in tokens (characters without
    `completion_ids`) and correctness from `accuracy` (same answer extraction and reference column):

        correct: min_value_correct + (max_value_correct - min_value_correct) * (1 + cos(pi p)) / 2
        wrong:   max_value_wrong   + (min_value_wrong   - max_value_wrong)   * (1 + cos(pi p)) / 2

    Range [min_value_wrong, max_value_correct] (defaults [-1, 1]); None where accuracy is None.
    Example (defaults, max_len 1000): correct at L=0 -> 1.0, at L=1000 -> 0.5; wrong at L=0 -> -1.0, at L=1000 -> -0.5.
    """

    required_columns = ("reference_column",)

    def __init__(self, min_value_wrong: float = -1.0, max_value_wrong: float = -0.5, min_value_correct: float = 0.5,
                 max_value_correct: float = 1.0, max_len: int = 1000, reference_column: str = "answer",
                 timeout_s: float = 5.0):
        if max_len <= 0:
            raise ConfigError(f"cosine.max_len: must be positive, got {max_len}")
        self.min_value_wrong, self.max_value_wrong = float(min_value_wrong), float(max_value_wrong)
        self.min_value_correct, self.max_value_correct = float(min_value_correct), float(max_value_correct)
        self.max_len = int(max_len)
        self.accuracy = AccuracyReward(reference_column=reference_column, timeout_s=timeout_s)

    def scale(self, correct: bool, length: int) -> float:
        closeness = (1.0 + math.cos(math.pi * min(length, self.max_len) / self.max_len)) / 2  # 1 at L=0, 0 at max_len
        if correct:
            return self.min_value_correct + (self.max_value_correct - self.min_value_correct) * closeness
        return self.max_value_wrong + (self.min_value_wrong - self.max_value_wrong) * closeness

    def __call__(self, completions, prompts=None, completion_ids=None, **kwargs) -> list[float | None]:
        correct = self.accuracy(completions, prompts=prompts, **kwargs)
        lengths = completion_lengths(completions, completion_ids)
        return [None if c is None else self.scale(c == 1.0, n) for c, n in zip(correct, lengths)]
