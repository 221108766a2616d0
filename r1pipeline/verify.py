"""Verification of sampled answers with the configured verifiable rewards (the same registry GRPO trains with).

A `verify:` block is a list of reward names (`[countdown]`), or of `{name: {parameter: value}}` for parametrized
ones; a list, not a mapping, so an experiment replaces a stage's verifiers instead of merging into them. The stages
default it to the dataset's own check (`${dataset.verify}`). A sample's verification score is the weighted mean of
those rewards (the `correct` reward with `partial_credit=true`: one verification path for training and sampling),
and it counts as correct when the score reaches `min_score` (1.0 = fully correct).

`Verifier(verify_cfg, answer_from=...)` makes every check read the answer one way (`strict`: R1 format required,
`anywhere`: format-free; see `rewards/text.final_answers`); `Verifiers` scores each completion under several such
readings at once (eval's strict and format-free columns), through the same class.
"""
from __future__ import annotations

from r1pipeline.errors import ConfigError
from r1pipeline.rewards import validate_reward_config
from r1pipeline.rewards.correct import CorrectReward
from r1pipeline.rewards.registry import as_mix
from r1pipeline.rewards.safety import SafeReward

__all__ = ["Verifier", "Verifiers", "as_mix", "check_verifier"]


def check_verifier(verify_cfg, columns: set[str] | None = None, answer_from: tuple[str, ...] = ()) -> None:
    """The verify list's names, parameters and (given `columns`) dataset columns; and that no check fixes its own
    `answer_from` to something other than each of `answer_from` (the readings this stage applies to every check)."""
    validate_reward_config(as_mix(verify_cfg), columns, where="stage.verify")
    for name, spec in as_mix(verify_cfg).items():
        fixed = spec.get("answer_from")
        if fixed is not None and any(fixed != how for how in answer_from):
            raise ConfigError(f"stage.verify.{name}.answer_from: {fixed!r} fixes where the check reads the answer, "
                              f"and this stage reads it as {' and '.join(answer_from)}; remove answer_from there")


class Verifier:
    def __init__(self, verify_cfg, answer_from: str | None = None):
        check_verifier(verify_cfg, answer_from=(answer_from,) if answer_from else ())
        # answer_from=None: each check reads the answer as its own parameters say (default: the last answer block)
        self.reward = SafeReward(CorrectReward(verify_cfg, answer_from=answer_from, partial_credit=True),
                                 name="verify")
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


class Verifiers:
    """One check under several readings of the answer, `{name: answer_from}` (eval: `{"strict": "strict", "free":
    "anywhere"}`); `score` gives one `{name: score}` per completion."""

    def __init__(self, verify_cfg, readings: dict[str, str]):
        self.readings = dict(readings)
        self.verifiers = {name: Verifier(verify_cfg, how) for name, how in self.readings.items()}

    def score(self, prompts: list, completions: list[str], rows: list[dict]) -> list[dict[str, float]]:
        per_reading = {name: v.score(prompts, completions, rows) for name, v in self.verifiers.items()}
        return [dict(zip(per_reading, scores)) for scores in zip(*per_reading.values())] if completions else []
