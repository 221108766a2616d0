"""The stages of the R1 pipeline, in one table: name, the module that holds its code, and what it produces.

Each module exposes `run(cfg) -> dict` (the stage's summary) and `check(cfg)`, the checks of its own `stage` block
(called by `check` here, from config.validate, before anything loads). R1's two RL stages are one algorithm with two
configurations (start model, reward mix), and so are its two SFT stages: `r1_zero` and `reasoning_rl` run
`stages/grpo.py`, `sft1` and `sft2` run `stages/sft.py`; what makes them different stages is their YAML
(`conf/stage/<name>.yaml`). Modules are imported only when their stage runs, so a CPU smoke run never imports what a
GPU stage needs.

`produces` lists the outputs a later stage may read (`stage.inputs.model: sft1` names the model that sft1 produced);
the table's order is the order of `stage=pipeline` (the stages of `OPT_IN` only where `stage.order` names them).
"""
from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping
from dataclasses import dataclass

from r1pipeline.composing import compose
from r1pipeline.errors import ConfigError


@dataclass(frozen=True)
class Stage:
    module: str                 # r1pipeline/stages/<module>.py
    produces: tuple[str, ...]   # outputs (manifest `outputs` keys) a later stage may name in its `inputs`
    about: str


STAGES = {
    "r1_zero": Stage("grpo", ("model",), "GRPO from the base model with verifiable rewards (R1 2.2)"),
    "cold_start": Stage("cold_start", ("dataset",), "verified, readable long chains of thought as SFT data (R1 2.3.1)"),
    "sft1": Stage("sft", ("model",), "SFT on the cold-start data (R1 2.3.1)"),
    "reasoning_rl": Stage("grpo", ("model",), "GRPO from SFT1: correctness, format, language consistency (R1 2.3.2)"),
    "rejection_sampling": Stage("rejection_sampling", ("dataset",), "verified, filtered samples + non-reasoning "
                                                                   "data as SFT2 data (R1 2.3.3)"),
    "sft2": Stage("sft", ("model",), "SFT on the rejection-sampled data (R1 2.3.3)"),
    "reward_model": Stage("reward_model", ("reward_model",), "a reward model (TRL RewardTrainer) on helpfulness / "
                                                              "harmlessness preference pairs, for align (R1 2.3.4)"),
    "align": Stage("align", ("model",), "GRPO over reasoning prompts (rule-based rewards) and "
                                                             "general prompts (reward model or judge) (R1 2.3.4)"),
    "distill": Stage("distill", ("model", "dataset"), "a smaller student fine-tuned on the teacher's verified traces "
                                                      "(R1 2.4)"),
    "eval": Stage("eval", (), "held-out pass@1 and maj@k of every model, strict and format-free"),
    "infer": Stage("infer", (), "answer a prompts file, or chat"),
    "pipeline": Stage("pipeline", (), "the stages above in order, in one run directory"),
}


# R1's last stages: `stage=pipeline` runs them only where `stage.order` names them (experiment=r1_full does); the
# default order is the reasoning recipe and its eval.
OPT_IN = ("reward_model", "align", "distill")


def producers(output: str) -> list[str]:
    """The stages that produce `output` ("model", "dataset"), in pipeline order."""
    return [name for name, stage in STAGES.items() if output in stage.produces]


def running(module: str) -> list[str]:
    """The stages whose code is `module` ("grpo": the RL stages), in pipeline order."""
    return [name for name, stage in STAGES.items() if stage.module == module]


def stage_module(name: str):
    return importlib.import_module(f"r1pipeline.stages.{STAGES[name].module}")


# What a stage reads, `stage.inputs.<slot>: <stage name>`, and the output of that stage each slot means.
INPUT_SLOTS = {"model": "model", "models": "model", "dataset": "dataset", "reward_model": "reward_model"}


def stage_inputs(stage) -> list[tuple[str, str, str | None]]:
    """(field, stage name or 'base', the output it names) for every input in a stage's `inputs` block: a name, a list
    of names (eval's `models`) or, for cold start, one name per method (`inputs.model.<method>`)."""
    found = []
    for slot, value in (stage.get("inputs") or {}).items():
        field, output = f"inputs.{slot}", INPUT_SLOTS.get(slot)
        if isinstance(value, str):
            found.append((field, value, output))
        elif isinstance(value, Mapping):
            found += [(f"{field}.{m}", value[m], output) for m in stage.get("methods", []) if m in value]
        elif value is not None:
            found += [(field, name, output) for name in value]
    return found


# Blocks whose keys are not fixed by the stage's YAML: TRL's fields (typecheck.check_fields) and a reward mix
# (rewards/registry.py) are checked where they are read; a pipeline's blocks are checked stage by stage.
FREE_BLOCKS = ("trainer", "rewards", "general_rewards")
# Earlier names of a stage's inputs, for the message that says where they went.
RENAMED = {"init_from": "inputs.model", "data_from": "inputs.dataset", "model_from": "inputs.model",
           "models": "inputs.models"}


def check_keys(block: Mapping, known: Mapping, field: str) -> None:
    """Every key of `block` is one of `known` (the stage's own YAML): Hydra rejects an unknown key on the command
    line, but an experiment file may add one, which would then silently do nothing."""
    for key, value in block.items():
        if key not in known:
            close = [RENAMED[key]] if key in RENAMED else difflib.get_close_matches(str(key), list(map(str, known)), n=1)
            hint = f"; did you mean {close[0]}?" if close else f"; the block holds {', '.join(map(str, known))}"
            raise ConfigError(f"{field}.{key}: not a field of this stage{hint}")
        if isinstance(value, Mapping) and isinstance(known[key], Mapping) and known[key] and key not in FREE_BLOCKS:
            check_keys(value, known[key], f"{field}.{key}")


def check(cfg) -> None:
    """The `stage` block: a stage of the table with only the keys of its YAML, inputs that name `base` (models
    only) or a stage that produces what the slot reads, a base model that can load where one is read, then the stage
    module's own checks."""
    from r1pipeline.models import check_model_path

    if cfg.stage.name not in STAGES:
        raise ConfigError(f"stage.name: {cfg.stage.name!r} is not a stage; choose one of {list(STAGES)}")
    known = compose(f"stage={cfg.stage.name}").stage
    if cfg.stage.name == "pipeline":  # its stages' blocks are checked one by one (pipeline.check)
        known = {k: None for k in known}
    check_keys(cfg.stage, known, "stage")
    inputs = stage_inputs(cfg.stage)
    for field, name, output in inputs:
        if output is None:
            raise ConfigError(f"stage.{field}: not an input; a stage reads {', '.join(INPUT_SLOTS)}")
        if not (name == "base" and output == "model" or name in producers(output)):
            what = "neither 'base' nor" if output == "model" else "not"
            raise ConfigError(f"stage.{field}: {name!r} is {what} a stage that produces a {output} "
                              f"({', '.join(producers(output))})")
    if any(name == "base" for _, name, _ in inputs):
        check_model_path(cfg.model.path)
    stage_module(cfg.stage.name).check(cfg)


def dispatch(cfg) -> dict:
    """Run the stage of a validated config (r1pipeline/cli.py: `run_stage` validates, then calls this): set up the
    process layout for its hardware profile, then the stage's module. The pipeline runs each of its stages this way,
    a launched worker its frozen config."""
    from r1pipeline.processes import init

    init(cfg.hardware)
    return stage_module(cfg.stage.name).run(cfg)
