"""Merge a stage's LoRA adapter into its base model: a deployable checkpoint that needs no peft.

python -m r1pipeline stage=merge_lora stage.init_from=<stage> run.dir=<run directory>

A stage trained with `model.lora.enabled=true` keeps its adapter in `<stage>/adapter` and already hands the merged
model on in `<stage>/model` (r1pipeline/training.py); this stage redoes that merge on its own, from the adapter and
the base its manifest names (`inputs.model`, with that stage's model config: dtype, and for tests `random_init`,
whose seeded weights rebuild exactly). The merged weights are W + (alpha / r) * B @ A. The main process merges and
writes; the other processes of a launched run wait for it.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from omegaconf import OmegaConf

from r1pipeline.config import validate
from r1pipeline.errors import ConfigError
from r1pipeline.models import load_tokenizer, merge_adapter
from r1pipeline.processes import is_main_process
from r1pipeline.rundir import execute_stage, read_manifest, resolve_stage_output, stage_dir

log = logging.getLogger(__name__)


def adapter_source(cfg) -> tuple[Path, str, object, bool]:
    """(adapter dir, base model path, the adapter stage's model config, whether that base was a seeded random init)."""
    source = cfg.stage.init_from
    if source == "base":
        raise ConfigError("stage.init_from: merge_lora needs the stage that trained the adapter, e.g. "
                          "stage.init_from=r1_zero")
    model = resolve_stage_output(cfg, source)
    manifest = read_manifest(stage_dir(cfg, source))
    adapter = manifest["outputs"].get("adapter")
    if adapter is None or not (Path(adapter) / "adapter_config.json").is_file():
        raise ConfigError(f"stage.init_from: {model} holds a full model, not a LoRA adapter (stage {source} ran "
                          f"with model.lora.enabled=false); there is nothing to merge, use it directly")
    src = OmegaConf.create(manifest["config"])
    random_init = bool(src.model.random_init) and src.stage.get("init_from", "base") == "base"
    return Path(adapter), manifest["inputs"]["model"], src.model, random_init


def run(cfg) -> dict:
    validate(cfg)
    t0 = time.time()
    adapter, base_path, model_cfg, random_init = adapter_source(cfg)

    def work(out):
        model_dir = out / "model"
        params = None
        if is_main_process():  # one merge, on the CPU; the others wait at the end of the stage
            merged = merge_adapter(model_cfg, base_path, random_init, str(adapter), cfg.hardware.use_cpu)
            merged.save_pretrained(model_dir)
            load_tokenizer(str(adapter)).save_pretrained(model_dir)
            params = merged.num_parameters()
            log.info("merged %s into %s (%.1fM params): %s", adapter, base_path, params / 1e6, model_dir)
        return {"outputs": {"model": str(model_dir)}, "params": params, "wall_s": round(time.time() - t0, 1)}

    return execute_stage(cfg, {"adapter": str(adapter), "base": base_path}, work)
