"""`correct`: the dataset's own correctness check, declared once in `conf/dataset/*.yaml` (`verify:`), as a reward.

The generating stages (cold start, rejection sampling, eval) verify samples with the same class (`r1pipeline.verify`),
so training and evaluation share one verification path.
"""
from __future__ import annotations

from r1pipeline.errors import ConfigError
from r1pipeline.rewards.registry import REWARDS, as_mix, params_of, register, validate_reward_config
from r1pipeline.rewards.text import check_answer_from


@register("correct")
class CorrectReward:
    """Whether the response solves the task by the dataset's own check: `checks` is a verify list (in the mixes
    `${dataset.verify}`: Countdown `[countdown]`, reasoning-gym tasks `[reasoning_gym]`, GSM8K/MATH `[accuracy]`).
    With s = the weighted mean of the checks' scores (a check's None counts 0; None when every check gives None):

        partial_credit=false (default): 1.0 if s >= 1 (every check fully satisfied) else 0.0
        partial_credit=true:            s  (a check's partial credit, e.g. reasoning-gym's, passes through)

    `answer_from` is handed to every check that reads an answer (`text.final_answers`): `strict` (default) reads
    the answer only from a response in R1 format (non-empty think block, then the answer block, nothing else), so
    an answer outside the tags, after an empty think block or in a second answer block earns nothing; `tags` the
    last `<answer>` block anywhere; `anywhere` format-free; null leaves each check's own setting (what the
    generating stages use). A check that sets its own `answer_from` conflicts with a non-null one here.
    Range {0, 1} (partial_credit: [0, 1]) or None.
    Example (checks [countdown], nums [3, 5, 2], target 16): "<think>3+5=8, 8*2=16</think><answer>(3+5)*2</answer>"
    -> 1.0; "<think>...</think><answer>16</answer>" -> 0.0; "<think></think><answer>(3+5)*2</answer>" -> 0.0.
    """

    nested_checks = "checks"  # the registry validates this parameter as a verify list, columns included

    def __init__(self, checks=None, answer_from: str | None = "strict", partial_credit: bool = False):
        if not checks:
            raise ConfigError("correct.checks: empty; name the dataset's check, e.g. checks: ${dataset.verify}")
        validate_reward_config(as_mix(checks), where="correct.checks")
        self.answer_from = None if answer_from is None else check_answer_from(answer_from, "correct")
        self.partial_credit = bool(partial_credit)
        self.checks, self.weights = [], []
        for name, spec in as_mix(checks).items():
            spec = dict(spec)
            self.weights.append(float(spec.pop("weight")))
            if self.answer_from is not None and "answer_from" in params_of(REWARDS[name]):
                if spec.get("answer_from", self.answer_from) != self.answer_from:
                    raise ConfigError(f"correct.checks.{name}.answer_from: {spec['answer_from']!r} conflicts with "
                                     f"correct.answer_from={self.answer_from!r}; set it once, on correct")
                spec["answer_from"] = self.answer_from
            self.checks.append(REWARDS[name](**spec))

    def combine(self, scores: tuple) -> float | None:
        if all(s is None for s in scores):
            return None
        mean = sum(w * (s or 0.0) for w, s in zip(self.weights, scores)) / (sum(self.weights) or 1.0)
        if self.partial_credit:
            return mean
        return 1.0 if mean >= 1.0 - 1e-9 else 0.0

    def answers(self, completions, prompts=None) -> list[str | None]:
        """The answer the first answer-reading check takes from each response (None each when no check reads one)."""
        for check in self.checks:
            if hasattr(check, "answers"):
                return check.answers(completions, prompts)
        return [None] * len(completions)

    def __call__(self, completions, prompts=None, **kwargs) -> list[float | None]:
        per_check = [check(completions, prompts=prompts, **kwargs) for check in self.checks]
        return [self.combine(scores) for scores in zip(*per_check)]
