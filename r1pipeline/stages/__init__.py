"""Stages of the R1 pipeline: each module exposes `run(cfg) -> dict` (its summary) and nothing else public.

Modules are imported only when their stage runs, so a CPU smoke run never imports what a GPU stage needs.
"""
from __future__ import annotations

import importlib

STAGES = {
    "r1_zero": "r1pipeline.stages.r1_zero",
    "merge_lora": "r1pipeline.stages.merge_lora",
}


def run_stage(cfg) -> dict:
    return importlib.import_module(STAGES[cfg.stage.name]).run(cfg)
