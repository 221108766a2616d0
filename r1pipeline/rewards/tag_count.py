"""`tag_count`: partial credit per think/answer tag."""
from __future__ import annotations

from r1pipeline.rewards.registry import register
from r1pipeline.rewards.text import structured_responses


@register("tag_count")
class TagCountReward:
    """Partial credit for the four tags: 0.25 for each of `<think>`, `</think>`, `<answer>`, `</answer>` that appears
    exactly once, counted only when the tags appear in that order (an out-of-order tag earns nothing).
    Repeating a block earns no extra credit (its tags then appear twice and score 0). Range [0, 1].
    Example: "<think>x</think><answer>4</answer>" -> 1.0; "<think>x</think>" -> 0.5; "" -> 0.0.
    `prefix=True`: a tag counts only when every tag before it counted, so "<think>x</answer>" (a skipped
    `</think>` and `<answer>`) earns 0.25 instead of 0.5 - SmolLM2 learned that shortcut on CPU (README).
    """

    TAGS = ("<think>", "</think>", "<answer>", "</answer>")

    def __init__(self, prefix: bool = False):
        self.prefix = prefix

    def __call__(self, completions, prompts=None, **kwargs) -> list[float]:
        out = []
        for text in structured_responses(completions, prompts):
            score, last = 0.0, -1
            for tag in self.TAGS:
                if text.count(tag) == 1 and text.find(tag) > last:
                    score += 0.25
                    last = text.find(tag)
                elif self.prefix:
                    break
            out.append(score)
        return out
