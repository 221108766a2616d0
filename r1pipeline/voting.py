"""maj@k votes by verified equivalence: two answers are one vote when the task's check says they are the same answer,
not when their lower-cased strings match.

The voter follows the first check of the verify list (`stage.verify`):

- `accuracy` (math answers): math-verify equivalence (`rewards/mathcheck`, the check the reward itself runs), so
  "\\frac{1}{2}", "0.5" and "1/2" are one vote; an answer math-verify cannot parse votes by its text.
- `countdown`: the expression's value and the numbers it uses, so "(3 + 5) * 2" and "2*(5+3) = 16" are one vote,
  and "16" (the target restated, other numbers) another.
- `reasoning_gym` and any other check: the numeric value when the answer is a number ("9", "9.0", " 9 " and "18/2"
  are one vote), else the text with case and whitespace folded.

An answer is read as the check reads it (`text.final_answers` with the same `answer_from` and answer kind), so the
strict and format-free columns each vote among their own answers; a response without an answer does not vote.
"""
from __future__ import annotations

import logging
import re
from fractions import Fraction

from r1pipeline.rewards import mathcheck
from r1pipeline.rewards.countdown import MAX_EXPR_CHARS, UnsafeExpression, safe_eval
from r1pipeline.rewards.registry import as_mix

log = logging.getLogger(__name__)


def folded(answer: str) -> str:
    """The answer's text with case and runs of whitespace folded."""
    return " ".join(answer.casefold().split())


def number_value(answer: str) -> Fraction | None:
    """The exact value of a plain number ("9", "-9.0", "1,234", "3/4", "1e3"), or None."""
    text = answer.strip()
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", text):
        text = text.replace(",", "")
    try:
        return Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None


class NumberVoter:
    """One vote per numeric value; other answers by folded text."""
    kind = "number"  # how final_answers reads a bare answer

    def key(self, answer: str):
        value = number_value(answer)
        return ("number", value) if value is not None else ("text", folded(answer))

    def same(self, a: str, b: str) -> bool:
        return self.key(a) == self.key(b)


class CountdownVoter(NumberVoter):
    """One vote per (value, numbers used) of an arithmetic expression (a trailing "= target" ignored, as the
    `countdown` check does); an expression that does not evaluate votes by its text without spaces."""
    kind = "expression"

    def key(self, answer: str):
        expr = answer.split("=")[0].strip()
        if len(expr) <= MAX_EXPR_CHARS:
            try:
                value = round(safe_eval(expr), 9)
                return "expression", value, tuple(sorted(int(n) for n in re.findall(r"\d+", expr)))
            except (UnsafeExpression, SyntaxError, ZeroDivisionError, RecursionError, OverflowError, ValueError):
                pass
        return "text", "".join(answer.split())


class MathVoter:
    """math-verify equivalence (either direction); an answer it cannot parse, or a check that times out, falls back to
    folded text."""
    kind = "number"

    def __init__(self, timeout_s: float = 5.0):
        self.timeout_s = float(timeout_s)

    def same(self, a: str, b: str) -> bool:
        if folded(a) == folded(b):
            return True
        try:
            return bool(mathcheck.check(a, b, timeout_s=self.timeout_s)
                        or mathcheck.check(b, a, timeout_s=self.timeout_s))
        except (mathcheck.MathTimeout, RuntimeError, OSError) as exc:
            log.warning("math-verify could not compare %r and %r (%s); counted as different votes", a[:80], b[:80], exc)
            return False


def voter_for(verify_cfg):
    """The voter of a verify list: that of its first check."""
    name, spec = next(iter(as_mix(verify_cfg).items()))
    if name == "accuracy":
        return MathVoter(spec.get("timeout_s", 5.0))
    return CountdownVoter() if name == "countdown" else NumberVoter()


def votes(answers: list[str | None], voter) -> list[list[int]]:
    """The answers' indices grouped into votes, in order of first appearance (None = no answer, no vote). Each answer
    joins the first vote whose first answer it is the same as (an identical text without a check)."""
    groups: list[list[int]] = []
    for i, answer in enumerate(answers):
        if answer is None:
            continue
        for group in groups:
            first = answers[group[0]]
            if first == answer or voter.same(first, answer):
                group.append(i)
                break
        else:
            groups.append([i])
    return groups


def majority_correct(answers: list[str | None], correct: list[bool], voter) -> bool:
    """Whether the vote with most answers is correct (a tie goes to the vote seen first; its first answer's
    verification decides; no answer at all: False)."""
    groups = votes(answers, voter)
    if not groups:
        return False
    top = max(groups, key=lambda g: (len(g), -g[0]))
    return bool(correct[top[0]])
