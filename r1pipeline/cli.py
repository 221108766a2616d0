"""The entry points: `main`, the one Hydra entry (compose, fill in the run directory, validate once, run the stage
here or launch its processes), and `run_stage(cfg)`, the same for a config composed elsewhere (tests, notebooks)."""
from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from r1pipeline import memory
from r1pipeline.config import validate
from r1pipeline.errors import ConfigError
from r1pipeline.stages import dispatch
from r1pipeline.sweep import register_resolvers, write_job_status

log = logging.getLogger("r1pipeline")
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
register_resolvers()  # before Hydra composes: hydra.sweep.subdir uses them (also in launcher processes importing us)


def _only_hydra_files(d: Path) -> bool:
    return d.is_dir() and all(p.name == ".hydra" or p.suffix == ".log" for p in d.iterdir())


def run_stage(cfg: DictConfig) -> dict:
    """Validate `cfg` (once, before anything loads), then run its stage in this process."""
    validate(cfg)
    memory.report(cfg)  # GPU profiles: the per-device memory estimate, a warning when it exceeds the GPU
    return dispatch(cfg)


def launch_stage(cfg: DictConfig) -> dict:
    """A profile of several processes: show the launch plan, validate `cfg`, freeze it and `accelerate launch` the
    worker on it here, or submit it to Slurm (r1pipeline/launcher.py)."""
    from r1pipeline.launcher import build_plan, launch

    plan = build_plan(cfg, Path(cfg.run.dir))
    log.info("hardware=%s: launch plan: %s", cfg.hardware.name, plan.command_line())
    # Through Slurm the GPUs are on the nodes it allocates, not here: every worker checks them there.
    validate(cfg, devices=cfg.hardware.get("launcher") != "slurm")
    memory.report(cfg)
    return launch(cfg, plan)


def dry_run(cfg: DictConfig) -> dict:
    """`run.dry_run=true`: everything a run does before it starts a process, then stop. Validates the config (every
    check but the ones that depend on this machine: its CUDA GPUs, and sbatch on PATH for hardware.launcher=slurm,
    so that a GPU run can be checked on a laptop before renting), refuses a used stage directory, writes the frozen
    config and launch.sh (and slurm.sbatch where the run uses one) into the run directory, and logs the command:
    `bash <run dir>/launch.sh` then runs exactly what was checked. Starts no process, loads no model and no data."""
    from r1pipeline.config import gpus_needed
    from r1pipeline.launcher import build_plan, describe, freeze, in_process_plan, needs_launch, write_scripts
    from r1pipeline.rundir import check_stage_dir

    from r1pipeline.models import hub_cache_unchecked, is_hub_id

    hw = cfg.hardware
    with hub_cache_unchecked():
        validate(cfg, devices=False)
    check_stage_dir(cfg)
    run_dir = Path(cfg.run.dir)
    plan = build_plan(cfg, run_dir) if needs_launch(hw) else in_process_plan(cfg, run_dir)
    files = [freeze(cfg, run_dir), *write_scripts(cfg, plan)]
    log.info("dry run: %s", describe(cfg, plan))
    need, have = gpus_needed(cfg)
    skipped = ([f"the CUDA device check (hardware={hw.name} needs {need} CUDA GPU(s) per machine, this machine has "
                f"{have}; each process checks its own machine when it starts)"] if need else [])
    if cfg.rollout.engine == "vllm" and not hw.use_cpu:
        skipped.append("rollout=vllm's CUDA GPU")
    if hw.get("launcher") == "slurm":
        skipped.append("sbatch on PATH (submit from a Slurm login node)")
    if os.environ.get("HF_HUB_OFFLINE") == "1" and is_hub_id(cfg.model.path):
        skipped.append(f"whether {cfg.model.path} is in this machine's hub cache (HF_HUB_OFFLINE=1; the machine that "
                       f"runs it downloads it or has it)")
    log.info("dry run: stage %s: the config is valid%s", cfg.stage.name,
             f"; skipped here: {'; '.join(skipped)}" if skipped else "")
    memory.report(cfg)  # GPU profiles: the per-device estimate (a warning when over the GPU's memory)
    log.info("dry run: wrote %s", ", ".join(str(f) for f in files))
    log.info("dry run: command: %s", plan.command_line())
    launch_sh = files[1]
    if hw.get("launcher") == "slurm":
        start = f"sbatch {files[-1]}"
    elif hw.get("num_machines", 1) > 1:
        start = (f"MAIN_PROCESS_IP=<machine 0's address> bash {launch_sh} on machine 0, the same with "
                 f"MACHINE_RANK=<n> on machine n (or sbatch {files[-1]})")
    else:
        start = f"bash {launch_sh}"
    log.info("dry run: nothing was started; to run it: %s", start)
    return {"stage": cfg.stage.name, "status": "dry run", "command": plan.command_line(),
            "files": [str(f) for f in files]}


def _dispatch(cfg: DictConfig) -> dict:
    from r1pipeline.launcher import needs_launch

    if cfg.run.get("dry_run"):
        return dry_run(cfg)
    return launch_stage(cfg) if needs_launch(cfg.hardware) else run_stage(cfg)


@hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig):
    from r1pipeline.launcher import LaunchError

    hydra_dir = Path(HydraConfig.get().runtime.output_dir)
    if not cfg.run.dir:
        with open_dict(cfg):
            cfg.run.dir = str(hydra_dir)
    multirun = HydraConfig.get().mode.name == "MULTIRUN"
    try:
        summary = _dispatch(cfg)
    except Exception as exc:  # noqa: BLE001 - in a sweep one failed job must not stop the others
        if isinstance(exc, ConfigError):
            log.error("%s", exc)
            # Bad input must not leave a half-made run directory behind: drop Hydra's own files if nothing else is there.
            if _only_hydra_files(hydra_dir) and not multirun:
                shutil.rmtree(hydra_dir, ignore_errors=True)
        elif isinstance(exc, LaunchError) or multirun:
            log.error("%s failed: %s: %s", cfg.stage.name, type(exc).__name__, exc, exc_info=multirun)
        else:
            raise
        if multirun:
            write_job_status(hydra_dir, cfg, "failed", error=f"{type(exc).__name__}: {exc}")
            return None
        sys.exit(2 if isinstance(exc, ConfigError) else 1)
    if multirun:
        write_job_status(hydra_dir, cfg, "complete")
    return summary
