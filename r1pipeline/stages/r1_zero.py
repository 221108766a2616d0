"""R1-Zero: GRPO straight from the base model with verifiable rewards, no SFT first (R1 section 2.2).

python -m r1pipeline stage=r1_zero [reward=...] [dataset=...] [stage.trainer.max_steps=...]

The reward mix is the `reward` group (so `-m reward=a,b,c` sweeps it) unless `stage.rewards` sets one.
"""
from __future__ import annotations

from r1pipeline.grpo import run_grpo_stage


def run(cfg) -> dict:
    return run_grpo_stage(cfg)
