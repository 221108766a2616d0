"""The project's config tree (conf/), composed from inside the code as the command line composes it: eval's other
benchmarks (`dataset=<name>`) and the stage blocks that unknown keys are held against (`stage=<name>`)."""
from __future__ import annotations

import functools
from pathlib import Path

from omegaconf import DictConfig

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def options(group: str) -> list[str]:
    """The options of a config group: conf/<group>/*.yaml."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@functools.lru_cache(maxsize=None)
def compose(*overrides: str) -> DictConfig:
    """The root config with `overrides` (e.g. "dataset=gsm8k"), composed by Hydra: inside the CLI's @hydra.main with
    its search path, elsewhere (tests, launched workers) from conf/. Cached: a config does not change during a run;
    callers get a copy they may change."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return hydra_compose(config_name="config", overrides=list(overrides))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides))
