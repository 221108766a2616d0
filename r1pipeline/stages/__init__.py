"""Stages of the R1 pipeline: each module exposes `run(cfg) -> dict` (its summary) and nothing else public.

Modules are imported only when their stage runs, so a CPU smoke run never imports what a GPU stage needs.
"""
from __future__ import annotations

import importlib

STAGES = {
    "r1_zero": "r1pipeline.stages.r1_zero",
    "cold_start": "r1pipeline.stages.cold_start",
    "sft1": "r1pipeline.stages.sft1",
    "reasoning_rl": "r1pipeline.stages.reasoning_rl",
    "rejection_sampling": "r1pipeline.stages.rejection_sampling",
    "sft2": "r1pipeline.stages.sft2",
    "eval": "r1pipeline.stages.eval",
    "infer": "r1pipeline.stages.infer",
    "pipeline": "r1pipeline.stages.pipeline",
}


def run_stage(cfg) -> dict:
    """Run the configured stage in this process, after setting up the process layout for its hardware profile."""
    from r1pipeline.processes import init

    init(cfg.hardware)
    return importlib.import_module(STAGES[cfg.stage.name]).run(cfg)
