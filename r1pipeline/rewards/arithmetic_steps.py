"""`arithmetic_steps`: partial credit for the arithmetic a chain of thought shows, every equation checked."""
from __future__ import annotations

import ast
import operator
import re
from fractions import Fraction

from r1pipeline.rewards.registry import register
from r1pipeline.rewards.text import last_user_text, structured_responses, think_block

# An equation "<numbers joined by + - * / x>" = <number>: "4 + 9 = 13", "13+3=16", "2 x 3 = 6". Found from each "="
# and its right-hand number, its left-hand side read back to the previous character that cannot be part of it: one
# pass over the text (a single regex for the whole equation backtracks quadratically on long operator runs).
_RIGHT = re.compile(r"=\s*(-?\d+(?:\.\d+)?)(?!\w|\.\d)")
_LEFT_CHARS = frozenset("0123456789.+-*/x\u00d7 \t")
_LEFT = re.compile(r"\d+(?:\.\d+)?(?:\s*[-+*/x\u00d7]\s*\d+(?:\.\d+)?)+")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def _value(expr: str) -> Fraction | None:
    """The exact value of an expression of numbers and + - * / (x and × read as *); None on anything else."""
    def walk(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return Fraction(str(node.value))
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Div) and right == 0:
                raise ZeroDivisionError
            return _OPS[type(node.op)](left, right)
        raise ValueError(type(node).__name__)

    try:
        return walk(ast.parse(expr.replace("\u00d7", "*").replace("x", "*"), mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError, RecursionError):
        return None


def equations(text: str) -> list[tuple[str, str]]:
    """(left-hand side, right-hand number) of every equation in `text`, in order."""
    found = []
    for m in _RIGHT.finditer(text):
        start = m.start()
        while start > 0 and text[start - 1] in _LEFT_CHARS:
            start -= 1
        left = text[start:m.start()].strip()
        digit = next((i for i, ch in enumerate(left) if ch.isdigit()), None)
        if digit is not None and _LEFT.fullmatch(left[digit:]):
            found.append((left[digit:], m.group(1)))
    return found


def grounded_share(reasoning: str, given: set[Fraction]) -> float:
    """Share of the equations in `reasoning` that are right and grounded: each operand is one of the `given` numbers
    or the result of an earlier right, grounded equation. 0.0 when there is no equation."""
    known, right, total = set(given), 0, 0
    for lhs, rhs in equations(reasoning):
        total += 1
        operands = {Fraction(n) for n in _NUMBER.findall(lhs)}
        if operands <= known and _value(lhs) == Fraction(rhs):
            right += 1
            known.add(Fraction(rhs))
    return right / total if total else 0.0


@register("arithmetic_steps")
class ArithmeticStepsReward:
    """Partial credit for the arithmetic a response shows: of the equations in its think block ("4 + 9 = 13"), the
    share that are right and grounded, i.e. every operand is a number of the question or the result of an earlier
    right equation (so "1 + 1 = 2" about nothing earns nothing, and an equation built on a wrong result is wrong too).
    A response without a closed think block, or without an equation in it, scores 0. It does not read the answer:
    it pays for correct work, `correct` for the right result. A rule-based check of shown steps, not a learned
    process reward model (R1 avoided those for reward hacking).

        score = right and grounded equations / equations, in [0, 1]

    Example (question "Calculate 4 + 9 + 3."): "<think>4 + 9 = 13, 13 + 3 = 16</think><answer>16</answer>" -> 1.0;
    "<think>4 + 9 = 12, 12 + 3 = 15</think>..." -> 0.0 (12 is wrong, so 15 builds on nothing);
    "<think>4 + 9 = 13, 13 + 3 = 17</think>..." -> 0.5; "<think>4 + 9 + 3</think>..." -> 0.0.
    """

    def __call__(self, completions, prompts=None, **kwargs) -> list[float]:
        prompts = prompts if prompts is not None else [None] * len(completions)
        scores = []
        for response, prompt in zip(structured_responses(completions, prompts), prompts):
            reasoning = think_block(response)
            given = {Fraction(n) for n in _NUMBER.findall(last_user_text(prompt))}
            scores.append(grounded_share(reasoning, given) if reasoning else 0.0)
        return scores
