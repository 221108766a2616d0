"""One registry of reward functions, built by name from `conf/reward/*.yaml`.

A reward is a picklable callable class following TRL's contract:
`reward(completions, prompts=..., **dataset_columns) -> list[float | None]`, one score per completion
(`None` = skip this sample for this reward). Parameters are constructor keyword arguments and live next to the
weight in the reward config:

    countdown: {weight: 1.0}
    cosine: {weight: 1.0, max_len: 1000}

Classes declare `required_columns` (dataset columns they read) so a missing column is reported before any model loads;
an entry that names a constructor parameter (e.g. accuracy's `reference_column`) stands for that parameter's value.
A class with `nested_checks = "<parameter>"` (`correct`) takes a verify list there, validated as a mix of its own.
A mix may also hold the reserved key `audit: true|false` (not a reward; see `r1pipeline/reward_audit.py`).
"""
from __future__ import annotations

import difflib
import inspect
import logging
from collections.abc import Mapping

from r1pipeline.errors import ConfigError
from r1pipeline.typecheck import check_value, hints

log = logging.getLogger(__name__)

REWARDS: dict[str, type] = {}
RESERVED = ("audit",)  # mix keys that are not rewards: `audit: false` skips the pre-training reward-hacking audit
# Modules whose import registers rewards: each is named after its reward (language.py: language_consistency).
_MODULES = ("accuracy", "arithmetic_steps", "code", "correct", "cosine", "countdown", "format", "judge", "language", "overlong",
            "reasoning_gym", "reasoning_steps", "repetition_penalty", "reward_model", "tag_count")


def register(name: str):
    """Class decorator: make a reward available as `name` in reward configs."""

    def wrap(cls):
        if name in REWARDS and REWARDS[name] is not cls:
            raise ValueError(f"reward {name!r} registered twice ({REWARDS[name]} and {cls})")
        cls.name = name
        REWARDS[name] = cls
        return cls

    return wrap


def _load_all() -> None:
    import importlib

    for mod in _MODULES:
        importlib.import_module(f"r1pipeline.rewards.{mod}")


def reward_names() -> list[str]:
    _load_all()
    return sorted(REWARDS)


def params_of(cls) -> dict[str, inspect.Parameter]:
    sig = inspect.signature(cls.__init__)
    return {n: p for n, p in sig.parameters.items() if n != "self" and p.kind is p.KEYWORD_ONLY or
            (n != "self" and p.kind is p.POSITIONAL_OR_KEYWORD)}


def as_mix(checks) -> dict:
    """A verify list, `[countdown, {accuracy: {reference_column: solution}}]`, as the mix mapping `build_rewards`
    takes (weight 1 unless an entry sets one)."""
    mix = {}
    for item in checks or []:
        if isinstance(item, str):
            mix[item] = {"weight": 1.0}
        else:
            mix.update({name: {"weight": 1.0, **dict(params or {})} for name, params in item.items()})
    return mix


def rewards_of(reward_cfg: Mapping) -> dict:
    """The mix without its reserved keys (`audit`), i.e. only the rewards."""
    return {name: spec for name, spec in reward_cfg.items() if name not in RESERVED}


def required_columns(cls, spec: Mapping) -> list[str]:
    """The dataset columns a reward configured with `spec` reads (its nested checks' too)."""
    params = params_of(cls)
    out = []
    for col in getattr(cls, "required_columns", ()):
        if col in params:
            col = spec.get(col, params[col].default)
        if col is not None:  # an optional column parameter left unset
            out.append(str(col))
    nested = getattr(cls, "nested_checks", None)
    for name, sub in as_mix(spec.get(nested) if nested else None).items():
        out += required_columns(REWARDS[name], {k: v for k, v in sub.items() if k != "weight"})
    return out


def _check_audit(reward_cfg: Mapping, where: str) -> None:
    if not isinstance(reward_cfg.get("audit", True), bool):
        raise ConfigError(f"{where}.audit: must be true or false (whether the reward-hacking audit runs before "
                          f"training), got {reward_cfg['audit']!r}")


def _validate_one(name: str, spec: dict, dataset_columns: set[str] | None, where: str) -> None:
    if name not in REWARDS:
        close = difflib.get_close_matches(name, REWARDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{where}.{name}: unknown reward{hint}; valid rewards: {', '.join(reward_names())}")
    weight = spec.pop("weight", 1.0)
    if not isinstance(weight, (int, float)):
        raise ConfigError(f"{where}.{name}.weight: must be a number, got {weight!r}")
    params, types = params_of(REWARDS[name]), hints(REWARDS[name].__init__)
    for key, value in spec.items():
        if key not in params:
            raise ConfigError(f"{where}.{name}.{key}: unknown parameter; {name} takes: weight"
                              + "".join(f", {p}" for p in params))
        if key in types:  # values of the parameter's type; ranges are the constructor's to check, below
            default = params[key].default
            check_value(value, types[key], f"{where}.{name}.{key}",
                        None if default in (inspect.Parameter.empty, None) else default)
    nested = getattr(REWARDS[name], "nested_checks", None)
    if nested:  # e.g. correct's `checks`: a verify list, validated as a mix of its own
        validate_reward_config(as_mix(spec.get(nested)), dataset_columns, f"{where}.{name}.{nested}")
    try:  # values: constructors check their own ranges (cheap; nothing heavy starts here)
        REWARDS[name](**spec)
    except (ValueError, TypeError) as exc:  # "cosine.max_len: ..." names its field; "workers must be ..." does not
        msg = str(exc)
        raise ConfigError(f"{where}.{msg}" if msg.startswith(f"{name}.") else f"{where}.{name}: {msg}") from exc
    if dataset_columns is not None:
        missing = [c for c in required_columns(REWARDS[name], spec) if c not in dataset_columns]
        if missing:
            raise ConfigError(
                f"{where}.{name}: needs dataset column(s) {missing}, which dataset has not "
                f"(it has {sorted(dataset_columns)}); pick a dataset that provides them or drop this reward")


def validate_reward_config(reward_cfg: Mapping, dataset_columns: set[str] | None = None,
                           where: str = "reward") -> None:
    """Check names, weights and parameters of a reward mix (and, if given, the dataset columns it reads); `where`
    is the config field the mix sits at, for the messages (`reward`, `stage.rewards`, `stage.verify`)."""
    _load_all()
    _check_audit(reward_cfg, where)
    rewards = rewards_of(reward_cfg)
    if not rewards:
        raise ConfigError(f"{where}: the mix is empty; choose at least one of {reward_names()}")
    for name, spec in rewards.items():
        _validate_one(name, dict(spec or {}), dataset_columns, where)


def build_rewards(reward_cfg: Mapping, recorder=None):
    """Instantiate a validated mix. Returns (list of safe reward callables, list of weights); every scored batch is
    reported to `recorder` (callbacks.SampleRecorder) when one is given."""
    from r1pipeline.rewards.safety import SafeReward

    validate_reward_config(reward_cfg)
    funcs, weights = [], []
    for name, spec in rewards_of(reward_cfg).items():
        spec = dict(spec or {})
        weights.append(float(spec.pop("weight", 1.0)))
        funcs.append(SafeReward(REWARDS[name](**spec), name=name, recorder=recorder))
    return funcs, weights
