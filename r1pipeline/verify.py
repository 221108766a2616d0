"""Verification of sampled answers with the configured verifiable rewards (the same registry GRPO trains with).

A `verify:` block is a list of reward names (`[countdown]`), or of `{name: {parameter: value}}` for parametrized
ones; a list, not a mapping, so an experiment replaces a stage's verifiers instead of merging into them. The stages
default it to the dataset's own check (`${dataset.verify}`). A sample's verification score is the weighted mean of
those rewards (the `correct` reward with `partial_credit=true`: one verification path for training and sampling),
and it counts as correct when the score reaches `min_score` (1.0 = fully correct).
"""
from __future__ import annotations

from r1pipeline.rewards import validate_reward_config
from r1pipeline.rewards.correct import CorrectReward
from r1pipeline.rewards.registry import as_mix
from r1pipeline.rewards.safety import SafeReward

__all__ = ["Verifier", "as_mix", "check_verifier"]


def check_verifier(verify_cfg, columns: set[str] | None = None) -> None:
    validate_reward_config(as_mix(verify_cfg), columns, where="stage.verify")


class Verifier:
    def __init__(self, verify_cfg):
        check_verifier(verify_cfg)
        # answer_from=None: each check reads the answer as its own parameters say (default: the last answer block)
        self.reward = SafeReward(CorrectReward(verify_cfg, answer_from=None, partial_credit=True), name="verify")
        self.names = list(as_mix(verify_cfg))

    def score(self, prompts: list, completions: list[str], rows: list[dict]) -> list[float]:
        """One score per completion; `prompts[i]` (with any prefill) and `rows[i]` (dataset columns) belong to it."""
        if not completions:
            return []
        wrapped = [[{"role": "assistant", "content": c}] for c in completions]
        columns = {k: [r[k] for r in rows] for k in rows[0] if k != "prompt"}
        return [s or 0.0 for s in self.reward(wrapped, prompts=prompts, **columns)]

    def answers(self, prompts: list, completions: list[str]) -> list[str | None]:
        """The answer the checks read from each completion (prefill included): what a rewrite should state."""
        wrapped = [[{"role": "assistant", "content": c}] for c in completions]
        return self.reward.reward.answers(wrapped, prompts=prompts)
