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

log = logging.getLogger("r1pipeline")
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def _only_hydra_files(d: Path) -> bool:
    return d.is_dir() and all(p.name == ".hydra" or p.suffix == ".log" for p in d.iterdir())


@hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig):
    from r1pipeline.stages import run_stage

    hydra_dir = Path(HydraConfig.get().runtime.output_dir)
    if not cfg.run.dir:
        with open_dict(cfg):
            cfg.run.dir = str(hydra_dir)
    try:
        return run_stage(cfg)
    except ConfigError as exc:
        log.error("%s", exc)
        # Bad input must not leave a half-made run directory behind: drop Hydra's own files if nothing else is there.
        if _only_hydra_files(hydra_dir):
            shutil.rmtree(hydra_dir, ignore_errors=True)
        if HydraConfig.get().mode.name == "MULTIRUN":
            raise
        sys.exit(2)
