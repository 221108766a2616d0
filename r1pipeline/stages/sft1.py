"""SFT1: supervised fine-tuning on the cold-start data, from the base model as in R1 (section 2.3.1).

python -m r1pipeline stage=sft1 run.dir=<run with cold_start> [stage.init_from=base] [stage.trainer.packing=true]
"""
from __future__ import annotations

from r1pipeline.sft import run_sft_stage


def run(cfg) -> dict:
    return run_sft_stage(cfg)
