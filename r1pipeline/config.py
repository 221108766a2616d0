"""Validation of a composed config: one entry, `validate(cfg)`, run once per run before any model or data loads.

Every failure is one `ConfigError` naming the field and the fix. Hydra already rejects unknown config-group options
and (struct mode) unknown keys on the command line; `validate` checks what YAML cannot: types and ranges, names that
must exist in a registry or in the stage table, trainer fields that must exist in TRL's config classes with values of
their types, and numbers that must fit together. Each block is checked by the module that owns it:

    run, seed        here
    dataset          r1pipeline/data (data.check)
    model            r1pipeline/models.py (models.check)
    hardware         r1pipeline/launcher.py (launcher.check, check_software); GPUs present: `check_devices` here
    rollout          r1pipeline/rollout.py (rollout.check)
    tracking         r1pipeline/tracking.py (tracking.check)
    alerts           r1pipeline/monitor.py (check_alerts_config)
    stage            r1pipeline/stages (stages.check: inputs, then the stage module's own `check`)

Who calls it: `cli.run_stage` (the CLI's in-process path, tests) and the CLI before it launches a multi-process
profile; a launched worker reads the validated, frozen config and checks only its own machine's devices.
Checks that need the data (the columns a reward reads) run when the stage builds its data, still before its model.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from r1pipeline.errors import ConfigError


def validate(cfg, devices: bool = True) -> None:
    """All checks for the configured stage; raises ConfigError on the first problem. `devices=False` skips what
    depends on this machine's GPUs (a Slurm submission: the job's nodes have them, and its workers check)."""
    from r1pipeline import data, launcher, models, rollout, stages, tracking
    from r1pipeline.monitor import check_alerts_config

    check_run(cfg)
    data.check(cfg.dataset)
    models.check(cfg.model, cfg.hardware.use_cpu)
    launcher.check(cfg)
    if devices:
        check_devices(cfg)
    launcher.check_software(cfg)
    rollout.check(cfg)
    tracking.check(cfg.tracking)
    check_alerts_config(cfg.alerts)
    stages.check(cfg)


def check_run(cfg) -> None:
    """`seed`, and the `run` block: a run directory this process can create and write, true/false flags."""
    if not isinstance(cfg.seed, int) or isinstance(cfg.seed, bool):
        raise ConfigError(f"seed: {cfg.seed!r} is not an integer; set an integer, e.g. seed=42")
    run = cfg.run
    if not isinstance(run.resume, bool):
        raise ConfigError(f"run.resume: {run.resume!r} must be true (continue the run in run.dir) or false")
    if not isinstance(run.get("dry_run", False), bool):
        raise ConfigError(f"run.dry_run: {run.dry_run!r} must be true (check, write the launch files, start nothing) "
                          f"or false")
    if not isinstance(run.samples_per_log, int) or isinstance(run.samples_per_log, bool) or run.samples_per_log < 0:
        raise ConfigError(f"run.samples_per_log: {run.samples_per_log!r} must be a number of completions (0 or more), "
                          f"e.g. run.samples_per_log=8")
    if run.dir is not None:
        check_writable_dir(run.dir, "run.dir")


def check_writable_dir(path, field: str) -> None:
    """`path` is a directory this process can write, or one it can create: its nearest existing parent takes a new
    directory (tried, then removed: permissions alone do not say it, e.g. for root under /proc)."""
    if not isinstance(path, str) or not path.strip():
        raise ConfigError(f"{field}: {path!r} is not a directory path; set {field}=<directory>, e.g. "
                          f"{field}=outputs/my_run")
    p = Path(path).expanduser().absolute()
    parent = p
    while not parent.exists():
        parent = parent.parent
    fix = f"pick a directory you can write to, e.g. {field}=outputs/my_run"
    if not parent.is_dir():
        raise ConfigError(f"{field}: {path} cannot be a directory: {parent} is a file; {fix}")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".r1pipeline-check-", dir=parent))
    except OSError as exc:
        raise ConfigError(f"{field}: cannot write {path} ({exc.strerror} in {parent}); {fix}") from None


def gpus_needed(cfg) -> tuple[int, int]:
    """(CUDA GPUs each machine of the run needs, CUDA GPUs this machine has); a CPU profile needs none."""
    import torch

    hw = cfg.hardware
    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return (0 if hw.use_cpu else hw.num_processes // hw.get("num_machines", 1)), have


def check_devices(cfg) -> None:
    """What depends on this machine: the CUDA GPUs a hardware profile needs, and a GPU for vLLM."""
    hw = cfg.hardware
    need, have = gpus_needed(cfg)
    if cfg.rollout.engine == "vllm" and not hw.use_cpu and have == 0:  # on a CPU profile: rollout.check says so
        raise ConfigError("rollout=vllm: vLLM needs a CUDA GPU and none is visible on this machine; use rollout=hf")
    if have >= need:
        return
    instead = "hardware=cpu" if have == 0 else "hardware=1xgpu" if have == 1 else f"hardware.num_processes={have}"
    if need == 1:
        raise ConfigError(f"hardware={hw.name}: needs a CUDA GPU and none is visible; use {instead} on this machine")
    per = " per machine" if hw.get("num_machines", 1) > 1 else ""
    raise ConfigError(f"hardware={hw.name}: needs {need} CUDA GPUs{per}, this machine has {have}; use {instead}")
