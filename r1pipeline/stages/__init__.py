"""The stages of the R1 pipeline, in one table: name, the module that holds its code, and what it produces.

Each module exposes `run(cfg) -> dict` (the stage's summary). R1's two RL stages are one algorithm with two
configurations (start model, reward mix), and so are its two SFT stages: `r1_zero` and `reasoning_rl` run
`stages/grpo.py`, `sft1` and `sft2` run `stages/sft.py`; what makes them different stages is their YAML
(`conf/stage/<name>.yaml`). Modules are imported only when their stage runs, so a CPU smoke run never imports what a
GPU stage needs.

`produces` lists the outputs a later stage may read (`stage.inputs.model: sft1` names the model that sft1 produced);
the table's order is the order of `stage=pipeline`.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass


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
    "eval": Stage("eval", (), "held-out pass@1 and maj@k of every model, strict and format-free"),
    "infer": Stage("infer", (), "answer a prompts file, or chat"),
    "pipeline": Stage("pipeline", (), "the stages above in order, in one run directory"),
}


def producers(output: str) -> list[str]:
    """The stages that produce `output` ("model", "dataset"), in pipeline order."""
    return [name for name, stage in STAGES.items() if output in stage.produces]


def stage_module(name: str):
    return importlib.import_module(f"r1pipeline.stages.{STAGES[name].module}")


def run_stage(cfg) -> dict:
    """Run the configured stage in this process, after setting up the process layout for its hardware profile."""
    from r1pipeline.processes import init

    init(cfg.hardware)
    return stage_module(cfg.stage.name).run(cfg)
