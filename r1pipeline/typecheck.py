"""Config values checked against their types: `number` and `flag` for our own fields, and Python annotations for
`stage.trainer` (TRL's config dataclasses) and a reward's parameters (its constructor). Unknown fields and values of
the wrong type become one ConfigError naming the field, the value, what it must be and an example, before anything
loads (a learning rate of "abc" would otherwise reach torch's optimizer after the model loaded).
"""
from __future__ import annotations

import dataclasses
import difflib
import enum
import types
import typing
from collections.abc import Mapping, Sequence

from r1pipeline.errors import ConfigError

_UNIONS = (typing.Union, types.UnionType)


def _enum(tp) -> bool:
    return isinstance(tp, type) and issubclass(tp, enum.Enum)


def fits(value, tp) -> bool:
    """Whether `value` (as OmegaConf hands it out: a primitive, a DictConfig or a ListConfig) can stand for `tp`.
    Annotations this cannot judge (classes, unresolved names) accept anything."""
    origin = typing.get_origin(tp)
    if origin in _UNIONS:
        args = typing.get_args(tp)
        # `SchedulerType | str`: the str stands for the enum's values (TRL converts it later, after the model loaded)
        if isinstance(value, str) and str in args and any(_enum(a) for a in args):
            return any(_enum(a) and fits(value, a) for a in args)
        return any(fits(value, a) for a in args)
    if tp is type(None):
        return value is None
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if _enum(tp):
        return isinstance(value, tp) or value in {m.value for m in tp}
    base = origin or tp
    if base in (list, tuple, set, Sequence):
        return isinstance(value, Sequence) and not isinstance(value, str)
    if base in (dict, Mapping):
        return isinstance(value, Mapping)
    return True


def describe(tp) -> str:
    """What a value of `tp` is, in words ("a number or null")."""
    origin = typing.get_origin(tp)
    if origin in _UNIONS:
        args = typing.get_args(tp)
        if str in args and any(_enum(a) for a in args):
            args = tuple(a for a in args if a is not str)
        return " or ".join(dict.fromkeys(describe(a) for a in args))
    if origin is typing.Literal:
        return f"one of {list(typing.get_args(tp))}"
    if _enum(tp):
        return f"one of {[m.value for m in tp]}"
    words = {type(None): "null", bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if tp in words:
        return words[tp]
    base = origin or tp
    return {list: "a list", tuple: "a list", set: "a list", dict: "a mapping"}.get(base, getattr(tp, "__name__", str(tp)))


def check_value(value, tp, field: str, example=None) -> None:
    if not fits(value, tp):
        hint = f", e.g. {field}={example}" if example is not None and fits(example, tp) else ""
        raise ConfigError(f"{field}: {value!r} is not {describe(tp)}; set {describe(tp)}{hint}")


def hints(obj) -> dict:
    """The resolved annotations of a class or function ({} where they cannot be resolved)."""
    try:
        return typing.get_type_hints(obj)
    except Exception:  # noqa: BLE001 - a library's forward reference this interpreter cannot resolve: no check
        return {}


def check_fields(values: Mapping, config_cls, where: str) -> None:
    """Every key of `values` is a field of the dataclass `config_cls` (a close match is suggested) holding a value
    of that field's type; the field's default is the example."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    types_ = hints(config_cls)
    for key in values:
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"{where}.{key}: not a field of trl.{config_cls.__name__}{hint}")
        if key in types_:
            default = fields[key].default
            check_value(values[key], types_[key], f"{where}.{key}",
                        None if default is dataclasses.MISSING or default is None else default)


def number(value, field: str, low=None, high=None, integer: bool = False, example=None) -> None:
    """`value` is a number (an integer with `integer`) in [low, high]; else one ConfigError naming `field`."""
    kind = "an integer" if integer else "a number"
    ok = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
    if ok and (low is None or value >= low) and (high is None or value <= high):
        return
    bounds = (f" from {low} to {high}" if low is not None and high is not None else f" of at least {low}"
              if low is not None else f" of at most {high}" if high is not None else "")
    hint = f", e.g. {field}={example}" if example is not None else ""
    raise ConfigError(f"{field}: {value!r} must be {kind}{bounds}{hint}")


def flag(value, field: str) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{field}: {value!r} must be true or false")
