"""SFT2: supervised fine-tuning on the rejection-sampled reasoning data plus non-reasoning data (R1 section 2.3.3).

As in the paper it starts from the base model by default (`stage.init_from=base`); `stage.init_from=sft1` continues
from the cold-start model instead.

python -m r1pipeline stage=sft2 run.dir=<run with rejection_sampling> [stage.trainer.packing=true]
"""
from __future__ import annotations

from r1pipeline.sft import run_sft_stage


def run(cfg) -> dict:
    return run_sft_stage(cfg)
