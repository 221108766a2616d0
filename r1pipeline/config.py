"""Cross-field checks on a composed config, in one place, before any model or data loads.

Every failure is one `ConfigError` naming the field and the fix. Hydra already rejects unknown config-group options
and (struct mode) unknown keys; this module checks what YAML cannot: names that must exist in a registry, trainer
fields that must exist in TRL's config classes, and numbers that must fit together.
"""
from __future__ import annotations

import dataclasses
import difflib

from r1pipeline.errors import ConfigError

GRPO_STAGES = {"r1_zero", "reasoning_rl"}


def check_trainer_fields(trainer_cfg, config_cls, where: str = "stage.trainer") -> None:
    """Every key under stage.trainer must be a field of the TRL config class it is passed to."""
    fields = {f.name for f in dataclasses.fields(config_cls)}
    for key in trainer_cfg:
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"{where}.{key}: not a field of trl.{config_cls.__name__}{hint}")


def check_grpo(cfg) -> None:
    from trl import GRPOConfig

    t = cfg.stage.trainer
    check_trainer_fields(t, GRPOConfig)
    g = t.get("num_generations", 8)
    if g is None or g < 2:
        raise ConfigError(f"stage.trainer.num_generations: {g} is too small; GRPO needs groups of at least 2 "
                          f"completions per prompt to compute an advantage (try 4 or 8)")
    per_device = t.get("per_device_train_batch_size", 8)
    steps = t.get("steps_per_generation") or t.get("gradient_accumulation_steps", 1)
    batch = per_device * cfg.hardware.num_processes * steps
    if batch % g:
        raise ConfigError(
            f"stage.trainer.per_device_train_batch_size: the generation batch ({per_device} per device x "
            f"{cfg.hardware.num_processes} processes x {steps} steps = {batch}) must be divisible by "
            f"num_generations={g}; set per_device_train_batch_size to a multiple of {g}")
    if t.get("max_completion_length", 1) < 1:
        raise ConfigError("stage.trainer.max_completion_length: must be at least 1")


def check_hardware(cfg) -> None:
    """GPU profiles need that many CUDA GPUs on this machine; say which profile fits instead."""
    import torch

    hw = cfg.hardware
    if hw.use_cpu:
        return
    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    need = hw.num_processes // hw.get("num_machines", 1)
    if have >= need:
        return
    instead = "hardware=cpu" if have == 0 else "hardware=1xgpu" if have == 1 else f"hardware.num_processes={have}"
    if need == 1:
        raise ConfigError(f"hardware={hw.name}: needs a CUDA GPU and none is visible; use {instead} on this machine")
    per = " per machine" if hw.get("num_machines", 1) > 1 else ""
    raise ConfigError(f"hardware={hw.name}: needs {need} CUDA GPUs{per}, this machine has {have}; use {instead}")


def validate(cfg) -> None:
    """All checks for the configured stage; raises ConfigError on the first problem."""
    from r1pipeline.models import check_model_path, check_quantization
    from r1pipeline.rewards import validate_reward_config
    from r1pipeline.stages import STAGES

    if cfg.stage.name not in STAGES:
        raise ConfigError(f"stage.name: {cfg.stage.name!r} is not a stage; choose one of {sorted(STAGES)}")
    init_from = cfg.stage.get("init_from", "base")
    if init_from != "base" and init_from not in STAGES:
        raise ConfigError(f"stage.init_from: {init_from!r} is neither 'base' nor a stage ({sorted(STAGES)})")
    check_hardware(cfg)
    check_quantization(cfg.model, cfg.hardware.use_cpu)
    if init_from == "base":
        check_model_path(cfg.model.path)
    if cfg.stage.name in GRPO_STAGES:
        check_grpo(cfg)
        validate_reward_config(cfg.stage.get("rewards") or cfg.reward)
