"""Countdown: the answer is an arithmetic expression that uses exactly the given numbers and hits the target."""
from __future__ import annotations

import ast
import operator
import re
from collections import Counter

from r1pipeline.rewards.registry import register
from r1pipeline.rewards.text import check_answer_from, final_answers

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
MAX_EXPR_CHARS = 200
MAX_NODES = 64


class UnsafeExpression(ValueError):
    pass


def safe_eval(expr: str) -> float:
    """Evaluate `expr` allowing only numbers, + - * / (binary), unary minus and parentheses.

    Never calls `eval`: the expression is parsed to an AST and walked over an allow-list, with bounded
    length and node count, so `__import__('os')`, `9**9**9**9` or a 200k-character string cost nothing.
    Raises UnsafeExpression for anything else, ZeroDivisionError for x/0.
    """
    if len(expr) > MAX_EXPR_CHARS:
        raise UnsafeExpression("expression too long")
    if not re.fullmatch(r"[\d\s+\-*/().]+", expr):
        raise UnsafeExpression("only digits, + - * / and parentheses are allowed")
    tree = ast.parse(expr, mode="eval")
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise UnsafeExpression("expression too large")

    def ev(node) -> float:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        raise UnsafeExpression(f"{type(node).__name__} is not allowed")

    return ev(tree)


def countdown_score(answer: str | None, nums, target) -> float:
    if not answer:
        return 0.0
    expr = answer.split("=")[0].strip()
    if len(expr) > MAX_EXPR_CHARS:  # before int(): a 5,000-digit run would raise in int() itself
        return 0.0
    used = [int(x) for x in re.findall(r"\d+", expr)]
    if Counter(used) != Counter(int(n) for n in nums):
        return 0.0
    try:
        value = safe_eval(expr)
    except (UnsafeExpression, SyntaxError, ZeroDivisionError, RecursionError, OverflowError, ValueError):
        return 0.0
    return 1.0 if abs(value - float(target)) < 1e-6 else 0.0


@register("countdown")
class CountdownReward:
    """1.0 if the answer expression uses each given number exactly once (columns `nums`, `target`) and
    evaluates to the target, else 0.0. A trailing "= target" is ignored. Only + - * / and parentheses, at most
    MAX_EXPR_CHARS characters and MAX_NODES syntax-tree nodes (which also bounds the nesting depth), never `eval`.
    `answer_from` says where the answer is read (`text.final_answers`): `tags` (default) the last `<answer>` block,
    `strict` only from a response in R1 format, `anywhere` format-free (else the last arithmetic expression).
    Range {0, 1}. Example (nums [3, 5, 2], target 16): "<answer>(3 + 5) * 2</answer>" -> 1.0; "3 * 5 + 2" -> 0.0;
    "<answer>16</answer>" (the target restated) -> 0.0.
    """

    required_columns = ("nums", "target")

    def __init__(self, answer_from: str = "tags"):
        self.answer_from = check_answer_from(answer_from, "countdown")

    def answers(self, completions, prompts=None) -> list[str | None]:
        """The answer expression this reward reads from each response (what it scores)."""
        return final_answers(completions, prompts, self.answer_from, kind="expression")

    def __call__(self, completions, nums, target, prompts=None, **kwargs) -> list[float]:
        return [countdown_score(a, n, t) for a, n, t in zip(self.answers(completions, prompts), nums, target)]
