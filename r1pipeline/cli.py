"""The entry points: `main`, the one Hydra entry (compose, fill in the run directory, validate once, run the stage
here or launch its processes), and `run_stage(cfg)`, the same for a config composed elsewhere (tests, notebooks)."""
from __future__ import annotations

import logging
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


def _dispatch(cfg: DictConfig) -> dict:
    from r1pipeline.launcher import needs_launch

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
