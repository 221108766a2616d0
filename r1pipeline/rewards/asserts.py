"""Test assertions split so that the program under test supplies values and never the verdict.

A dataset test such as `assert set(f(x)) == set([1, 2])` is parsed here, in the trusted process. Every maximal
sub-expression that needs the program (here `f(x)`) becomes a *candidate* that the sandbox evaluates and sends back as
the repr of plain data (numbers, strings, bytes, None, and lists/tuples/dicts/sets of them). The rest — the expected
values, comparisons, `not`/`and`/`or`, and a few pure built-ins (`set`, `sorted`, `round`, `math.isclose`, ...) — is
evaluated here, on values parsed back without running any code. So a program cannot fake a pass: an object whose
`__eq__` always says True does not survive the trip, patching `math.isclose` or builtins inside the sandbox does not
reach the comparison, and printing a fake result only supplies values, which it could have returned anyway.

Residual trust, documented: a program-free sub-expression that this evaluator does not support (a method call such as
`"".join(...)`, a comprehension) is evaluated in the sandbox too, with the builtins as they were before the program
ran; a program could in principle interfere with it. MBPP's tests are asserts over calls and literals.
"""
from __future__ import annotations

import ast
import math
import operator
from dataclasses import dataclass
from functools import lru_cache

PURE_CALLS = {"set": set, "frozenset": frozenset, "sorted": sorted, "list": list, "tuple": tuple, "len": len,
              "abs": abs, "round": round, "float": float, "int": int, "str": str, "sum": sum, "min": min, "max": max,
              "bool": bool, "dict": dict, "math.isclose": math.isclose, "math.fabs": math.fabs}
CONSUMING = {"set", "frozenset", "sorted", "list", "tuple", "len", "sum", "min", "max", "dict"}  # take any iterable
BIN_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}  # no ** (10**10**10 would hang the trainer)
UNARY_OPS = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_, ast.Invert: operator.invert}
COMPARE_OPS = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
               ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Is: operator.is_, ast.IsNot: operator.is_not,
               ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b}


class UnsupportedTest(ValueError):
    """The dataset's test is not a single `assert` statement."""


@dataclass(frozen=True)
class Plan:
    """`tree`: the assertion with each candidate replaced by the name `__candidate_<i>`; `candidates`: what the
    sandbox evaluates, as {"expr": source, "user": uses the program's names, "materialize": an iterator is listed}."""

    tree: ast.Expression
    candidates: tuple[dict, ...]


def call_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Call):
        f = node.func
        if isinstance(f, ast.Name):
            return f.id
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
            return f"{f.value.id}.{f.attr}"
    return None


def evaluable(node: ast.AST) -> bool:
    """Whether the parent can evaluate `node` itself (no program names, only supported syntax)."""
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return all(evaluable(e) for e in node.elts)
    if isinstance(node, ast.Dict):
        return all(k is not None and evaluable(k) for k in node.keys) and all(evaluable(v) for v in node.values)
    if isinstance(node, ast.UnaryOp):
        return type(node.op) in UNARY_OPS and evaluable(node.operand)
    if isinstance(node, ast.BinOp):
        return type(node.op) in BIN_OPS and evaluable(node.left) and evaluable(node.right)
    if isinstance(node, ast.Compare):
        return all(type(op) in COMPARE_OPS for op in node.ops) and all(map(evaluable, [node.left, *node.comparators]))
    if isinstance(node, ast.BoolOp):
        return all(evaluable(v) for v in node.values)
    if isinstance(node, ast.Call):
        return (call_name(node) in PURE_CALLS and all(not isinstance(a, ast.Starred) for a in node.args)
                and all(map(evaluable, node.args)) and all(k.arg is not None and evaluable(k.value)
                                                            for k in node.keywords))
    return False


def uses_program(node: ast.AST) -> bool:
    """Whether `node` names anything beyond the pure calls (i.e. the program's functions or the setup's objects)."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and sub.id not in PURE_CALLS:
            return True
    return False


@lru_cache(maxsize=4096)
def compile_assert(source: str) -> Plan:
    try:
        module = ast.parse(source.strip())
    except SyntaxError as exc:
        raise UnsupportedTest(f"not valid Python: {exc}") from exc
    if len(module.body) != 1 or not isinstance(module.body[0], ast.Assert):
        raise UnsupportedTest("not a single assert statement")
    candidates: list[dict] = []
    tree = ast.Expression(_split(module.body[0].test, candidates, materialize=False))
    return Plan(ast.fix_missing_locations(tree), tuple(candidates))


def _split(node: ast.AST, candidates: list[dict], materialize: bool) -> ast.AST:
    if evaluable(node):
        return node
    if isinstance(node, ast.Compare) and all(type(op) in COMPARE_OPS for op in node.ops):
        return ast.Compare(_split(node.left, candidates, False), node.ops,
                           [_split(c, candidates, False) for c in node.comparators])
    if isinstance(node, ast.BoolOp):
        return ast.BoolOp(node.op, [_split(v, candidates, False) for v in node.values])
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return ast.UnaryOp(node.op, _split(node.operand, candidates, False))
    name = call_name(node)
    if (name in PURE_CALLS and not any(isinstance(a, ast.Starred) for a in node.args)
            and all(k.arg is not None for k in node.keywords)):
        return ast.Call(node.func, [_split(a, candidates, name in CONSUMING) for a in node.args],
                        [ast.keyword(k.arg, _split(k.value, candidates, False)) for k in node.keywords])
    candidates.append({"expr": ast.unparse(node), "user": uses_program(node), "materialize": materialize})
    return ast.Name(id=f"__candidate_{len(candidates) - 1}", ctx=ast.Load())


def evaluate(node: ast.AST, bound: dict):
    """Evaluate a plan's tree (or an `evaluable` expression) with candidates bound to parsed values."""
    ev = lambda n: evaluate(n, bound)  # noqa: E731
    if isinstance(node, ast.Expression):
        return ev(node.body)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return bound[node.id]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return {ast.Tuple: tuple, ast.List: list, ast.Set: set}[type(node)](ev(e) for e in node.elts)
    if isinstance(node, ast.Dict):
        return {ev(k): ev(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.UnaryOp):
        return UNARY_OPS[type(node.op)](ev(node.operand))
    if isinstance(node, ast.BinOp):
        return BIN_OPS[type(node.op)](ev(node.left), ev(node.right))
    if isinstance(node, ast.BoolOp):
        values = (ev(v) for v in node.values)
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.Compare):
        left = ev(node.left)
        for op, right_node in zip(node.ops, node.comparators):
            right = ev(right_node)
            if not COMPARE_OPS[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.Call):
        return PURE_CALLS[call_name(node)](*map(ev, node.args), **{k.arg: ev(k.value) for k in node.keywords})
    raise ValueError(f"cannot evaluate {type(node).__name__}")


def parse_value(text: str):
    """A value the sandbox sent back (its repr), rebuilt from literals only: no code runs, no custom objects."""
    return _literal(ast.parse(text, mode="eval").body)


def _literal(node: ast.AST):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return {ast.Tuple: tuple, ast.List: list, ast.Set: set}[type(node)](_literal(e) for e in node.elts)
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.Name) and node.id in ("inf", "nan"):
        return float(node.id)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand)
        if isinstance(value, (int, float, complex)) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):  # complex literals: 1+2j, -1-0j
        left, right = _literal(node.left), _literal(node.right)
        if isinstance(left, (int, float)) and isinstance(right, complex):
            return left + right if isinstance(node.op, ast.Add) else left - right
    if isinstance(node, ast.Call) and call_name(node) in ("set", "frozenset") and len(node.args) <= 1 \
            and not node.keywords:
        return PURE_CALLS[call_name(node)](*(_literal(a) for a in node.args))
    raise ValueError(f"not a plain value: {ast.unparse(node)[:80]}")


def passes(plan: Plan, values: list[dict]) -> bool:
    """Whether the assertion holds for the sandbox's candidate values (an error or an unparsable value fails)."""
    if len(values) != len(plan.candidates) or any("value" not in v for v in values):
        return False
    try:
        bound = {f"__candidate_{i}": parse_value(str(v["value"])) for i, v in enumerate(values)}
        return bool(evaluate(plan.tree, bound))
    except Exception:  # noqa: BLE001 - TypeError, ValueError, RecursionError, ...: the test fails
        return False
