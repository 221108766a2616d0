"""R1-Zero: GRPO straight from the base model with verifiable rewards (no SFT first).

python -m r1pipeline stage=r1_zero [reward=...] [dataset=...] [stage.trainer.max_steps=...]
"""
from __future__ import annotations

import logging

from omegaconf import OmegaConf

from r1pipeline.config import validate
from r1pipeline.grpo import prepare_data, run_grpo
from r1pipeline.logs import stage_logging
from r1pipeline.models import resolve_model_path
from r1pipeline.rundir import prepare_stage_dir, resolve_stage_output, write_json, write_manifest

log = logging.getLogger(__name__)


def run(cfg) -> dict:
    validate(cfg)
    init_from = cfg.stage.init_from
    if init_from == "base":
        model_path, random_init = resolve_model_path(cfg.model.path), cfg.model.random_init
    else:
        model_path, random_init = str(resolve_stage_output(cfg, init_from)), False
    data = prepare_data(cfg)
    out = prepare_stage_dir(cfg)
    OmegaConf.save(cfg, out / "config.yaml", resolve=True)
    with stage_logging(out):
        write_manifest(out, cfg, "running", inputs={"model": model_path})
        result = run_grpo(cfg, out, data, model_path, random_init)
        summary = {"stage": cfg.stage.name, "status": "complete", "inputs": {"model": model_path}, **result}
        write_json(out / "summary.json", summary)
        write_manifest(out, cfg, "complete", inputs={"model": model_path}, outputs=result["outputs"],
                       metrics=result["metrics"])
        log.info("%s done in %.0f s: %s", cfg.stage.name, result["wall_s"], out)
    return summary
