"""Verification of sampled answers with the configured verifiable rewards (the same registry GRPO trains with).

A `verify:` block is a list of reward names (`[countdown]`), or of `{name: {parameter: value}}` for parametrized
ones; a list, not a mapping, so an experiment replaces a stage's verifiers instead of merging into them. A sample's
verification score is the mean of those rewards, and it counts as correct when the score reaches `min_score`
(1.0 = fully correct).
"""
from __future__ import annotations

from r1pipeline.rewards import build_rewards, validate_reward_config


def as_mix(verify_cfg) -> dict:
    """`[countdown, {cosine: {max_len: 100}}]` -> the reward-mix mapping `build_rewards` takes (weights 1)."""
    mix = {}
    for item in verify_cfg or []:
        if isinstance(item, str):
            mix[item] = {"weight": 1.0}
        else:
            mix.update({name: {"weight": 1.0, **dict(params or {})} for name, params in item.items()})
    return mix


def check_verifier(verify_cfg, columns: set[str] | None = None) -> None:
    validate_reward_config(as_mix(verify_cfg), columns)


class Verifier:
    def __init__(self, verify_cfg):
        self.funcs, self.weights = build_rewards(as_mix(verify_cfg))
        self.names = [f.name for f in self.funcs]

    def score(self, prompts: list, completions: list[str], rows: list[dict]) -> list[float]:
        """One score per completion; `prompts[i]` (with any prefill) and `rows[i]` (dataset columns) belong to it."""
        if not completions:
            return []
        wrapped = [[{"role": "assistant", "content": c}] for c in completions]
        columns = {k: [r[k] for r in rows] for k in rows[0] if k != "prompt"}
        total = [0.0] * len(completions)
        for func, w in zip(self.funcs, self.weights):
            for i, s in enumerate(func(wrapped, prompts=prompts, **columns)):
                total[i] += w * (s or 0.0)
        norm = sum(self.weights) or 1.0
        return [t / norm for t in total]
