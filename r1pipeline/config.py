"""Cross-field checks on a composed config, in one place, before any model or data loads.

Every failure is one `ConfigError` naming the field and the fix. Hydra already rejects unknown config-group options
and (struct mode) unknown keys; this module checks what YAML cannot: names that must exist in a registry, trainer
fields that must exist in TRL's config classes, and numbers that must fit together.
"""
from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping

from r1pipeline.errors import ConfigError

GRPO_STAGES = {"r1_zero", "reasoning_rl"}
SFT_STAGES = {"sft1", "sft2"}
GENERATING_METHODS = ("r1_zero", "few_shot", "direct")  # cold_start methods that sample a model
# Stages that sample outside GRPO (r1pipeline/sampling.py); the pipeline runs some of them.
GENERATING_STAGES = {"cold_start", "rejection_sampling", "eval", "infer", "pipeline"}


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


def check_sft(cfg) -> None:
    from trl import SFTConfig

    check_trainer_fields(cfg.stage.trainer, SFTConfig)
    if cfg.stage.trainer.get("assistant_only_loss"):
        raise ConfigError("stage.trainer.assistant_only_loss: not used; SFT stages train on the final assistant turn "
                          "through the prompt/completion format (completion_only_loss), which works with any chat "
                          "template; remove the field")


# What a stage reads, `stage.inputs.<slot>: <stage name>`, and the output of that stage it means (stages/__init__.py).
INPUT_SLOTS = {"model": "model", "models": "model", "dataset": "dataset"}


def stage_inputs(stage) -> list[tuple[str, str, str | None]]:
    """(field, stage name or 'base', the output it names) for every input in a stage's `inputs` block: a name, a list
    of names (eval's `models`) or, for cold start, one name per generating method."""
    found = []
    for slot, value in (stage.get("inputs") or {}).items():
        field, output = f"inputs.{slot}", INPUT_SLOTS.get(slot)
        if isinstance(value, str):
            found.append((field, value, output))
        elif isinstance(value, Mapping):  # cold_start: the model each generating method samples
            found += [(f"{field}.{m}", value[m], output) for m in stage.get("methods", []) if m in value]
        elif value is not None:
            found += [(field, name, output) for name in value]
    return found


def check_inputs(cfg) -> None:
    """Each input names `base` (models only: the model group) or a stage that produces what the slot reads."""
    from r1pipeline.stages import producers

    for field, name, output in stage_inputs(cfg.stage):
        if output is None:
            raise ConfigError(f"stage.{field}: not an input; a stage reads {', '.join(INPUT_SLOTS)}")
        if name == "base" and output == "model" or name in producers(output):
            continue
        what = "neither 'base' nor" if output == "model" else "not"
        raise ConfigError(f"stage.{field}: {name!r} is {what} a stage that produces a {output} "
                          f"({', '.join(producers(output))})")
    for method in cfg.stage.get("methods") or []:
        if method in GENERATING_METHODS and method not in (cfg.stage.inputs.get("model") or {}):
            raise ConfigError(f"stage.inputs.model.{method}: the {method} method needs a model to sample "
                              f"(base or a stage name)")


def draws_training_rows(stage) -> bool:
    """Whether a stage trains on, or samples training data from, the dataset's training rows."""
    if stage.name == "pipeline":
        return any(draws_training_rows(stage[name]) for name in stage.order if name in stage)
    return stage.name in GRPO_STAGES or stage.name == "rejection_sampling" or (
        stage.name == "cold_start" and any(m in GENERATING_METHODS for m in stage.get("methods") or []))


def check_training_split(cfg) -> None:
    """A stage that draws training rows refuses a dataset that has none (`dataset.split: null`, e.g. MATH-500: a
    test set as a whole, none of its rows may be trained on)."""
    if cfg.dataset.get("split") is None and cfg.dataset.source != "reasoning_gym" and draws_training_rows(cfg.stage):
        raise ConfigError(f"dataset.split: null - dataset {cfg.dataset.name!r} has no training split (it is a test "
                          f"set as a whole: none of its rows may be trained on), and stage {cfg.stage.name} draws "
                          f"training rows; train on another dataset (e.g. dataset=numina_math_tir) and use "
                          f"dataset={cfg.dataset.name} with stage=eval")


def check_eval(cfg) -> None:
    """Eval scores something (a greedy pass, k samples, or both), with a usable bootstrap, on benchmarks that compose
    and whose check reads answers strictly and format-free (r1pipeline/benchmarks.py)."""
    from r1pipeline.benchmarks import check

    s = cfg.stage
    if not isinstance(s.k, int) or s.k < 0:
        raise ConfigError(f"stage.k: {s.k!r} must be a number of samples per prompt, 0 (no sampling) or more")
    if not isinstance(s.greedy, bool):
        raise ConfigError(f"stage.greedy: {s.greedy!r} must be true or false")
    if s.k == 0 and not s.greedy:
        raise ConfigError("stage.k: 0 with stage.greedy=false leaves nothing to score; set stage.greedy=true (one "
                          "greedy answer per prompt) or stage.k to 1 or more (sampled answers per prompt)")
    if not isinstance(s.num_prompts, int) or s.num_prompts < 1:
        raise ConfigError(f"stage.num_prompts: {s.num_prompts!r} must be at least 1")
    if not isinstance(s.bootstrap.resamples, int) or s.bootstrap.resamples < 100:
        raise ConfigError(f"stage.bootstrap.resamples: {s.bootstrap.resamples!r} is too few for a 95% interval; "
                          f"use 1000 or more (2000 is the default)")
    check(cfg)


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


ENGINES = ("hf", "static", "vllm")


def check_rollout(cfg, devices: bool = True) -> None:
    """The `rollout` group: a known engine, a positive prompt bucket, and vLLM only where it can run (`devices`:
    whether this machine is the one that will run it)."""
    r = cfg.rollout
    if r.engine not in ENGINES:
        raise ConfigError(f"rollout.engine: {r.engine!r} is not an engine; choose one of {list(ENGINES)}")
    bucket = r.get("prompt_bucket")
    if bucket is not None and (not isinstance(bucket, int) or bucket < 1):
        raise ConfigError(f"rollout.prompt_bucket: {bucket!r} must be a positive number of tokens (e.g. 64) or null")
    if r.engine == "static" and bucket is None:
        raise ConfigError("rollout.prompt_bucket: the static engine needs a bucket (e.g. 64) so that compiled shapes "
                          "repeat; set rollout.prompt_bucket=64 or use rollout=hf")
    if r.engine == "vllm":
        check_vllm(cfg, devices)


def check_vllm(cfg, devices: bool = True) -> None:
    """vLLM runs on CUDA GPUs from checkpoints on disk, and must be installed."""
    import importlib.util

    import torch

    if cfg.hardware.use_cpu:
        raise ConfigError(f"rollout=vllm: vLLM needs a CUDA GPU and hardware={cfg.hardware.name} runs on CPU; "
                          f"use rollout=hf or rollout=static there")
    if devices and not torch.cuda.is_available():
        raise ConfigError("rollout=vllm: vLLM needs a CUDA GPU and none is visible on this machine; use rollout=hf")
    if importlib.util.find_spec("vllm") is None:
        raise ConfigError("rollout=vllm: the vllm package is not installed; pip install 'r1pipeline[vllm]' "
                          "(the vLLM version TRL 1.16 supports beside transformers 5.23), or use rollout=static")
    if cfg.model.random_init and cfg.stage.name in GENERATING_STAGES:
        raise ConfigError("rollout=vllm: vLLM samples checkpoints from disk and model.random_init builds the weights "
                          "in memory; use rollout=hf for random-weight models")


def check_launcher(cfg) -> None:
    from r1pipeline.launcher import needs_launch

    launcher = cfg.hardware.get("launcher", "local")
    if launcher not in ("local", "slurm"):
        raise ConfigError(f"hardware.launcher: {launcher!r} is not a launcher; use local or slurm")
    if launcher == "slurm" and not needs_launch(cfg.hardware):
        raise ConfigError(f"hardware.launcher: slurm starts `accelerate launch` through sbatch, and "
                          f"hardware={cfg.hardware.name} runs in this process; use a launched profile "
                          f"(hardware=cpu_accelerate, 8xh100, 2x8xh100, ...)")


def validate(cfg, devices: bool = True) -> None:
    """All checks for the configured stage; raises ConfigError on the first problem. `devices=False` skips what
    depends on this machine's GPUs (a Slurm submission: the job's nodes have them, and its workers check)."""
    from r1pipeline.models import check_model_path, check_quantization
    from r1pipeline.monitor import check_alerts_config
    from r1pipeline.rewards import validate_reward_config
    from r1pipeline.stages import STAGES

    if cfg.stage.name not in STAGES:
        raise ConfigError(f"stage.name: {cfg.stage.name!r} is not a stage; choose one of {sorted(STAGES)}")
    check_inputs(cfg)
    check_training_split(cfg)
    check_launcher(cfg)
    check_alerts_config(cfg.alerts)
    if devices:
        check_hardware(cfg)
    check_rollout(cfg, devices)
    check_quantization(cfg.model, cfg.hardware.use_cpu)
    if any(name == "base" for _, name, _ in stage_inputs(cfg.stage)) or cfg.stage.name in ("pipeline", "eval"):
        check_model_path(cfg.model.path)
    if cfg.stage.name in GRPO_STAGES:
        check_grpo(cfg)
        field = "stage.rewards" if cfg.stage.get("rewards") else "reward"
        validate_reward_config(cfg.stage.get("rewards") or cfg.reward, where=field)
    if cfg.stage.name in SFT_STAGES:
        check_sft(cfg)
    if cfg.stage.name == "eval":
        check_eval(cfg)
