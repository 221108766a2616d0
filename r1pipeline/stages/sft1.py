"""SFT1: supervised fine-tuning on the cold-start data, from the base model as in R1 (section 2.3.1).

python -m r1pipeline stage=sft1 run.dir=<run with cold_start> [stage.init_from=base] [stage.trainer.packing=true]
"""
from __future__ import annotations

import logging


from r1pipeline.config import validate
from r1pipeline.logs import stage_logging
from r1pipeline.rundir import finish_stage, input_model, prepare_stage_dir, resolve_stage_output, write_manifest
from r1pipeline.sft import run_sft

log = logging.getLogger(__name__)


def run(cfg) -> dict:
    validate(cfg)
    dataset = resolve_stage_output(cfg, cfg.stage.data_from, "dataset", "data_from")
    model_path, random_init = input_model(cfg, cfg.stage.init_from)
    out = prepare_stage_dir(cfg)
    inputs = {"model": model_path, "dataset": str(dataset)}
    with stage_logging(out):
        write_manifest(out, cfg, "running", inputs=inputs)
        result = run_sft(cfg, out, dataset, model_path, random_init)
        summary = finish_stage(out, cfg, inputs, result)
        log.info("%s done in %.0f s: %s", cfg.stage.name, result["wall_s"], out)
    return summary
