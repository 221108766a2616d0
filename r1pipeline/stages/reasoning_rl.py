"""Reasoning-oriented RL: GRPO from the SFT1 model with accuracy, format and language-consistency rewards
(R1 section 2.3.2).

python -m r1pipeline stage=reasoning_rl run.dir=<run with sft1> [stage.init_from=sft1] [stage.rewards=...]

The stage carries its own reward mix (`stage.rewards`, pulled from conf/reward/ by its defaults list), so a pipeline
keeps R1-Zero's mix and this one side by side.
"""
from __future__ import annotations

import logging

from omegaconf import OmegaConf

from r1pipeline.config import validate
from r1pipeline.grpo import prepare_data, run_grpo
from r1pipeline.logs import stage_logging
from r1pipeline.rundir import finish_stage, input_model, prepare_stage_dir, write_manifest

log = logging.getLogger(__name__)


def run(cfg) -> dict:
    validate(cfg)
    model_path, random_init = input_model(cfg, cfg.stage.init_from)  # fails early: "run stage X first"
    data = prepare_data(cfg)
    out = prepare_stage_dir(cfg)
    OmegaConf.save(cfg, out / "config.yaml", resolve=True)
    inputs = {"model": model_path}
    with stage_logging(out):
        write_manifest(out, cfg, "running", inputs=inputs)
        result = run_grpo(cfg, out, data, model_path, random_init)
        summary = finish_stage(out, cfg, inputs, result)
        log.info("%s done in %.0f s: %s", cfg.stage.name, result["wall_s"], out)
    return summary
