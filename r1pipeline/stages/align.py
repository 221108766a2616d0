"""Alignment RL for all scenarios (R1 section 2.3.4): GRPO over reasoning and general prompts, each scored its way.

python -m r1pipeline stage=align run.dir=<run with sft2 and reward_model> [stage.general_rewards={judge: {weight: 1.0}}]

The training set is the run dataset's reasoning prompts (`kind: reasoning`) plus general prompts (`kind: general`:
the built-in everyday and harmful requests, or a local file). Every reward of the two mixes sees only its own kind:
`stage.rewards` (rule-based, as in reasoning RL) scores reasoning rows, `stage.general_rewards` (a reward model from
`stage=reward_model`, or the LLM judge) scores general rows, and each returns None on the other kind, which TRL leaves
out of that row's weighted sum (it sums rewards with NaN skipped). The trainer is the GRPO stages' (stages/grpo.py).
"""
from __future__ import annotations

import random

from datasets import Dataset, concatenate_datasets
from omegaconf import OmegaConf

from r1pipeline.data import build_dataset, load_files
from r1pipeline.data.preferences import builtin_general_prompts
from r1pipeline.errors import ConfigError
from r1pipeline.rewards import build_rewards, validate_reward_config
from r1pipeline.rewards.registry import rewards_of
from r1pipeline.rundir import execute_stage, input_model, resolve_stage_output
from r1pipeline.stages import grpo

KINDS = ("reasoning", "general")


class ForKind:
    """A reward restricted to rows whose `kind` column is `kind`: the reward sees only those rows (every per-row
    argument cut to them), the others score None."""

    def __init__(self, reward, kind: str):
        self.reward, self.kind = reward, kind

    def __call__(self, completions, prompts=None, kind=None, **columns) -> list[float | None]:
        n = len(completions)
        mine = [i for i, k in enumerate(kind or [None] * n) if k == self.kind]
        scores: list[float | None] = [None] * n
        if not mine:
            return scores
        cut = lambda v: [v[i] for i in mine] if isinstance(v, list) and len(v) == n else v  # noqa: E731
        sub = {k: cut(v) for k, v in columns.items()}
        if self.kind == "general":
            sub["kind"] = [self.kind] * len(mine)  # the reward_model reward reads it too
        for i, s in zip(mine, self.reward([completions[i] for i in mine], prompts=cut(prompts), **sub)):
            scores[i] = s
        return scores


def general_mix(cfg) -> dict:
    """`stage.general_rewards` with the reward model's path filled in from `stage.inputs.reward_model`."""
    mix = OmegaConf.to_container(cfg.stage.general_rewards, resolve=True)
    if "reward_model" in mix and not (mix["reward_model"] or {}).get("path"):
        path = resolve_stage_output(cfg, cfg.stage.inputs.reward_model, "reward_model", "inputs.reward_model")
        mix["reward_model"] = {**(mix["reward_model"] or {}), "path": str(path)}
    return mix


def check(cfg) -> None:
    """The GRPO checks of the stage (trainer, reasoning mix, dataset), the general mix, and its prompt source."""
    grpo.check(cfg)
    stage = cfg.stage
    validate_reward_config(stage.general_rewards, where="stage.general_rewards")
    both = set(rewards_of(stage.general_rewards)) & set(rewards_of(grpo.reward_cfg(cfg)))
    if both:  # TRL logs each reward under its name
        raise ConfigError(f"stage.general_rewards: {sorted(both)} also in stage.rewards; a reward scores one kind of "
                          f"row here, so name it in one mix only")
    uses_model = "reward_model" in rewards_of(stage.general_rewards)
    if uses_model and not stage.inputs.reward_model and not stage.general_rewards.reward_model.get("path"):
        raise ConfigError("stage.inputs.reward_model: the general mix has reward_model but no stage names its scorer; "
                          "set stage.inputs.reward_model=reward_model (run it first) or "
                          "stage.general_rewards.reward_model.path=<checkpoint>")
    g = stage.general
    if g.source not in ("builtin", "local") or (g.source == "local" and not g.path):
        raise ConfigError("stage.general.source: use builtin, or local with stage.general.path=<file>")
    if not isinstance(g.size, int) or isinstance(g.size, bool) or g.size < 1:
        raise ConfigError(f"stage.general.size: {g.size!r} must be a number of prompts, 1 or more")


def general_rows(g) -> list[dict]:
    """The general prompts as conversations (`prompt`), from the built-in set or a file (`question` or `prompt`)."""
    if g.source == "builtin":
        questions = [r["question"] for r in builtin_general_prompts(g.size, g.seed)]
    else:
        ds = load_files(OmegaConf.create({"source": "local", "path": g.path}))
        column = next((c for c in ("question", "prompt") if c in ds.column_names), None)
        if column is None:
            raise ConfigError(f"stage.general.path: {g.path} needs a `question` or `prompt` column "
                              f"(it has {ds.column_names})")
        questions = list(ds[column])
        random.Random(g.seed).shuffle(questions)
        questions = questions[:g.size]
    system = [{"role": "system", "content": g.system}] if g.system else []
    return [{"prompt": [*system, {"role": "user", "content": q}], "kind": "general"} for q in questions]


def mixed_data(cfg) -> dict:
    """The dataset's reasoning rows (kind: reasoning) and the general rows in one shuffled train split; a general row
    holds None in the reasoning columns. The test split (and `eval`, with held-out evaluation on) is reasoning rows."""
    data = build_dataset(cfg.dataset, cfg.model.path)
    reasoning = data["train"].add_column("kind", ["reasoning"] * len(data["train"]))
    validate_reward_config(cfg.stage.rewards, set(reasoning.column_names), "stage.rewards")
    general = Dataset.from_list([{**dict.fromkeys(reasoning.column_names), **r}
                                 for r in general_rows(cfg.stage.general)], features=reasoning.features)
    # Held-out evaluation during training scores the dataset's test prompts (reasoning rows; general prompts have
    # no held-out split) with the reasoning mix.
    test = data["test"].add_column("kind", ["reasoning"] * len(data["test"]))
    return grpo.with_eval(cfg, {"train": concatenate_datasets([reasoning, general]).shuffle(seed=cfg.seed),
                                "test": test})


def routed_rewards(cfg, general: dict):
    """(funcs, weights) of both mixes, each reward restricted to its kind of row."""
    def build(recorder):
        funcs, weights = [], []
        for kind, mix in (("reasoning", cfg.stage.rewards), ("general", general)):
            f, w = build_rewards(mix, recorder=recorder)
            for safe in f:
                safe.reward = ForKind(safe.reward, kind)
            funcs, weights = funcs + f, weights + w
        return funcs, weights
    return build


def run(cfg) -> dict:
    model_path, random_init = input_model(cfg, cfg.stage.inputs.model)  # "run stage X first" when missing
    general = general_mix(cfg)  # likewise for the reward model
    data = mixed_data(cfg)
    kinds = {k: sum(1 for x in data["train"]["kind"] if x == k) for k in KINDS}

    def work(out):
        audit = grpo.audit_rewards(cfg, data["train"].filter(lambda r: r["kind"] == "reasoning"))
        result = grpo.run_grpo(cfg, out, data, model_path, random_init, rewards=routed_rewards(cfg, general))
        result["metrics"].update(reward_audit=audit, prompts_by_kind=kinds)
        return result

    inputs = {"model": model_path, "reward_model": (general.get("reward_model") or {}).get("path"),
              "prompts_by_kind": kinds}
    return execute_stage(cfg, inputs, work)
