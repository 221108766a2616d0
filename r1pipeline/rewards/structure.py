"""Shape-of-the-reasoning rewards: step markers, n-gram repetition, and DAPO's overlong punishment."""
from __future__ import annotations

import re

from r1pipeline.rewards.registry import register
from r1pipeline.rewards.text import completion_text, responses

# "Step 1:", a numbered line "2." / "3)", a bullet line, or a sequencing word with its comma ("First,").
_STEP = re.compile(r"\bStep\s*\d+\s*:|^[ \t]*\d+[.)][ \t]|^[ \t]*[-*\u2022][ \t]|\b(?:First|Second|Third|Next|Finally),",
                   re.M)


@register("reasoning_steps")
class ReasoningStepsReward:
    """Rewards explicit step-by-step reasoning: n = number of step markers in the response ("Step 1:", numbered
    lines "1." / "2)", bullet lines "-" / "*" / "•", and "First,", "Second,", "Third,", "Next,", "Finally,"),
    score = min(1, n / min_steps). Range [0, 1].
    Example (min_steps 3): "Step 1: add. Step 2: multiply. Finally, check." -> 1.0; "First, add." -> 0.333...
    """

    def __init__(self, min_steps: int = 3):
        if min_steps < 1:
            raise ValueError(f"reasoning_steps.min_steps: must be >= 1, got {min_steps}")
        self.min_steps = int(min_steps)

    def __call__(self, completions, prompts=None, **kwargs) -> list[float]:
        return [min(1.0, len(_STEP.findall(text)) / self.min_steps) for text in responses(completions, prompts)]


@register("repetition_penalty")
class RepetitionPenaltyReward:
    """Penalizes repeated word n-grams in the completion (open-r1 / Yeo et al. 2025). With the lower-cased
    whitespace-separated words of the completion and G its list of n-grams:

        score = max_penalty * (1 - #distinct(G) / #G)        (0 when there are fewer than n words)

    Range [max_penalty, 0] (max_penalty <= 0). Example (n 3, max_penalty -1): "a b c a b c" -> 4 trigrams, 3
    distinct -> -0.25; any text without a repeated trigram -> 0.0.
    """

    def __init__(self, ngram_size: int = 3, max_penalty: float = -1.0):
        if max_penalty > 0:
            raise ValueError(f"repetition_penalty.max_penalty: must be <= 0 (a penalty), got {max_penalty}")
        if ngram_size < 1:
            raise ValueError(f"repetition_penalty.ngram_size: must be >= 1, got {ngram_size}")
        self.ngram_size, self.max_penalty = int(ngram_size), float(max_penalty)

    def penalty(self, text: str) -> float:
        words = text.lower().split()
        if len(words) < self.ngram_size:
            return 0.0
        grams = [tuple(words[i:i + self.ngram_size]) for i in range(len(words) - self.ngram_size + 1)]
        return self.max_penalty * (1.0 - len(set(grams)) / len(grams))

    def __call__(self, completions, **kwargs) -> list[float]:
        return [self.penalty(completion_text(c)) for c in completions]


@register("overlong")
class OverlongReward:
    """DAPO's soft overlong punishment (Yu et al. 2025, eq. 13) on the completion length L in tokens
    (`completion_ids`), with L_max = max_completion_length and a buffer of L_cache = buffer_length tokens:

        0                                   if L <= L_max - L_cache
        (L_max - L_cache - L) / L_cache     if L_max - L_cache < L <= L_max
        -1                                  if L > L_max

    Range [-1, 0]. Set max_completion_length to the trainer's (`${stage.trainer.max_completion_length}`).
    Example (L_max 100, L_cache 20): L=50 -> 0.0; L=90 -> -0.5; L=100 -> -1.0. None without `completion_ids`.
    """

    def __init__(self, max_completion_length: int = 1024, buffer_length: int = 256):
        if not 0 < buffer_length <= max_completion_length:
            raise ValueError(f"overlong.buffer_length: must be in (0, max_completion_length={max_completion_length}],"
                             f" got {buffer_length}")
        self.max_completion_length, self.buffer_length = int(max_completion_length), int(buffer_length)

    def punishment(self, length: int) -> float:
        start = self.max_completion_length - self.buffer_length
        if length <= start:
            return 0.0
        if length <= self.max_completion_length:
            return (start - length) / self.buffer_length
        return -1.0

    def __call__(self, completions, completion_ids=None, **kwargs) -> list[float | None]:
        if completion_ids is None:
            return [None] * len(completions)
        return [self.punishment(len(ids)) for ids in completion_ids]
