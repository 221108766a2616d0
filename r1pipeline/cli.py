"""The one Hydra entry point: compose, fill in the run directory, dispatch to the stage."""
from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from r1pipeline.errors import ConfigError
from r1pipeline.sweep import register_resolvers, write_job_status

log = logging.getLogger("r1pipeline")
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
register_resolvers()  # before Hydra composes: hydra.sweep.subdir uses them (also in launcher processes importing us)


def _only_hydra_files(d: Path) -> bool:
    return d.is_dir() and all(p.name == ".hydra" or p.suffix == ".log" for p in d.iterdir())


def _dispatch(cfg: DictConfig) -> dict:
    """In-process for single-process profiles; otherwise freeze the config and `accelerate launch` the worker."""
    from r1pipeline.launcher import launch, needs_launch
    from r1pipeline.stages import run_stage

    return launch(cfg) if needs_launch(cfg.hardware) else run_stage(cfg)


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
