"""Reasoning-oriented RL: GRPO from the SFT1 model with correctness (the dataset's own check), format and
language-consistency rewards (R1 section 2.3.2).

python -m r1pipeline stage=reasoning_rl run.dir=<run with sft1> [stage.init_from=sft1] [stage.rewards=...]

The stage carries its own reward mix (`stage.rewards`, pulled from conf/reward/ by its defaults list), so a pipeline
keeps R1-Zero's mix and this one side by side.
"""
from __future__ import annotations

from r1pipeline.grpo import run_grpo_stage


def run(cfg) -> dict:
    return run_grpo_stage(cfg)
