"""`format`: the strict R1 think/answer format."""
from __future__ import annotations

from r1pipeline.rewards.registry import register
from r1pipeline.rewards.text import R1_FORMAT, structured_responses


@register("format")
class FormatReward:
    """1.0 if the response is exactly `<think>…</think><answer>…</answer>` (whitespace allowed between and
    around, no other tags inside, nothing after), else 0.0. The prefill is part of the response from its `<think>`
    on (a prefill preamble such as "Let me solve this step by step." before it is ours, not the model's).
    Range {0, 1}. Example: "<think>2+2</think><answer>4</answer>" -> 1.0; "<answer>4</answer>" -> 0.0.
    """

    def __init__(self, require_nonempty: bool = True):
        self.require_nonempty = require_nonempty

    def __call__(self, completions, prompts=None, **kwargs) -> list[float]:
        out = []
        for text in structured_responses(completions, prompts):
            m = R1_FORMAT.match(text)
            ok = m is not None and (not self.require_nonempty or (m.group(1).strip() and m.group(2).strip()))
            out.append(1.0 if ok else 0.0)
        return out


def format_compliance(completions, prompts=None) -> float:
    """Share of completions that the strict `format` reward accepts: the `format_compliance` metric every GRPO step
    logs, whichever rewards its mix holds (r1pipeline/stages/grpo.py)."""
    scores = FormatReward()(completions, prompts=prompts)
    return sum(scores) / len(scores) if scores else 0.0
