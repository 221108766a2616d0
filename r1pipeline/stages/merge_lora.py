"""Merge a stage's LoRA adapter into its base model: a deployable checkpoint that needs no peft.

python -m r1pipeline stage=merge_lora stage.init_from=<stage> run.dir=<run directory>

The adapter stage's manifest names the base it trained on (`inputs.model`) and its model config (dtype, and for tests
`random_init`, whose seeded weights rebuild exactly); the merged weights are W + (alpha / r) * B @ A.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from omegaconf import OmegaConf

from r1pipeline.config import validate
from r1pipeline.errors import ConfigError
from r1pipeline.logs import stage_logging
from r1pipeline.models import load_model, load_tokenizer
from r1pipeline.rundir import (is_main_process, prepare_stage_dir, read_manifest, resolve_stage_output, stage_dir,
                               write_json, write_manifest)

log = logging.getLogger(__name__)


def adapter_source(cfg) -> tuple[Path, str, object, bool]:
    """(adapter dir, base model path, the adapter stage's model config, whether that base was a seeded random init)."""
    source = cfg.stage.init_from
    if source == "base":
        raise ConfigError("stage.init_from: merge_lora needs the stage that trained the adapter, e.g. "
                          "stage.init_from=r1_zero")
    adapter = resolve_stage_output(cfg, source)
    if not (adapter / "adapter_config.json").is_file():
        raise ConfigError(f"stage.init_from: {adapter} holds a full model, not a LoRA adapter (stage {source} ran "
                          f"with model.lora.enabled=false); there is nothing to merge, use it directly")
    manifest = read_manifest(stage_dir(cfg, source))
    src = OmegaConf.create(manifest["config"])
    random_init = bool(src.model.random_init) and src.stage.get("init_from", "base") == "base"
    return adapter, manifest["inputs"]["model"], src.model, random_init


def run(cfg) -> dict:
    validate(cfg)
    t0 = time.time()
    adapter, base_path, model_cfg, random_init = adapter_source(cfg)
    out = prepare_stage_dir(cfg)
    inputs = {"adapter": str(adapter), "base": base_path}
    with stage_logging(out):
        write_manifest(out, cfg, "running", inputs=inputs)
        from peft import PeftModel

        base = load_model(OmegaConf.merge(model_cfg, {"load_in_4bit": False}), base_path, cfg.hardware.use_cpu,
                          random_init=random_init)
        merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
        model_dir = out / "model"
        if is_main_process():
            merged.save_pretrained(model_dir)
            load_tokenizer(str(adapter)).save_pretrained(model_dir)
        log.info("merged %s into %s (%.1fM params): %s", adapter, base_path, merged.num_parameters() / 1e6, model_dir)
        result = {"outputs": {"model": str(model_dir)}, "params": merged.num_parameters(),
                  "wall_s": round(time.time() - t0, 1)}
        summary = {"stage": cfg.stage.name, "status": "complete", "inputs": inputs, **result}
        write_json(out / "summary.json", summary)
        write_manifest(out, cfg, "complete", inputs=inputs, outputs=result["outputs"])
    return summary
