"""`reasoning_steps`: explicit step markers in the response."""
from __future__ import annotations

import re

from r1pipeline.errors import ConfigError
from r1pipeline.rewards.registry import register
from r1pipeline.rewards.text import responses

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
            raise ConfigError(f"reasoning_steps.min_steps: must be >= 1, got {min_steps}")
        self.min_steps = int(min_steps)

    def __call__(self, completions, prompts=None, **kwargs) -> list[float]:
        return [min(1.0, len(_STEP.findall(text)) / self.min_steps) for text in responses(completions, prompts)]
