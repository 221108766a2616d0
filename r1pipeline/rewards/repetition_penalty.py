"""`repetition_penalty`: repeated word n-grams in the completion."""
from __future__ import annotations

from r1pipeline.errors import ConfigError
from r1pipeline.rewards.registry import register
from r1pipeline.rewards.text import completion_text


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
            raise ConfigError(f"repetition_penalty.max_penalty: must be <= 0 (a penalty), got {max_penalty}")
        if ngram_size < 1:
            raise ConfigError(f"repetition_penalty.ngram_size: must be >= 1, got {ngram_size}")
        self.ngram_size, self.max_penalty = int(ngram_size), float(max_penalty)

    def penalty(self, text: str) -> float:
        words = text.lower().split()
        if len(words) < self.ngram_size:
            return 0.0
        grams = [tuple(words[i:i + self.ngram_size]) for i in range(len(words) - self.ngram_size + 1)]
        return self.max_penalty * (1.0 - len(set(grams)) / len(grams))

    def __call__(self, completions, **kwargs) -> list[float]:
        return [self.penalty(completion_text(c)) for c in completions]
