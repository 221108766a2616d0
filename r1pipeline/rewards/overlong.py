"""`overlong`: DAPO's soft punishment of completions near or past the length limit."""
from __future__ import annotations

from r1pipeline.errors import ConfigError
from r1pipeline.rewards.registry import register


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
            raise ConfigError(f"overlong.buffer_length: must be in (0, max_completion_length={max_completion_length}],"
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
