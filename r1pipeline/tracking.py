"""Experiment trackers as trainer callbacks, chosen by the `tracking` group. A tracker never stops training."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from omegaconf import OmegaConf
from transformers import TrainerCallback

log = logging.getLogger(__name__)


class GuardedCallback(TrainerCallback):
    """Forwards every event to a tracker callback; an exception is logged once and the tracker switched off."""

    def __init__(self, inner: TrainerCallback, name: str):
        self.inner, self.name, self.broken = inner, name, False

    def __getattribute__(self, attr):
        if attr.startswith("on_"):
            inner_method = getattr(object.__getattribute__(self, "inner"), attr, None)

            def call(*args, **kwargs):
                if self.broken or inner_method is None:
                    return None
                try:
                    return inner_method(*args, **kwargs)
                except Exception as exc:  # noqa: BLE001 - a tracker must never stop training
                    self.broken = True
                    log.warning("tracker %s failed (%s: %s); training continues without it", self.name,
                                type(exc).__name__, exc)
                    return None

            return call
        return object.__getattribute__(self, attr)


def tracking_callbacks(cfg, stage_dir: Path, is_main: bool = True) -> list[TrainerCallback]:
    backend = cfg.tracking.backend
    if backend == "none":
        return []
    if backend == "swanlab":
        return [GuardedCallback(_swanlab(cfg, stage_dir, is_main), "swanlab")] if is_main else []
    raise ValueError(f"tracking.backend: unknown {backend!r}")


def _swanlab(cfg, stage_dir: Path, is_main: bool):
    import swanlab
    from transformers.integrations import SwanLabCallback

    mode = os.environ.get("SWANLAB_MODE", cfg.tracking.mode)
    try:
        swanlab.init(project=cfg.tracking.project, experiment_name=f"{Path(cfg.run.dir).name}/{cfg.stage.name}",
                     config=OmegaConf.to_container(cfg, resolve=True), mode=mode,
                     logdir=str(Path(stage_dir) / "swanlog"))
    except Exception as exc:  # noqa: BLE001 - fall back to offline logs, never stop
        log.warning("swanlab.init(mode=%s) failed (%s); falling back to offline logging", mode, exc)
        swanlab.init(project=cfg.tracking.project, mode="offline", logdir=str(Path(stage_dir) / "swanlog"))
    return SwanLabCallback()


def finish_tracking(cfg) -> None:
    if cfg.tracking.backend == "swanlab":
        try:
            import swanlab

            if swanlab.get_run() is not None:
                swanlab.finish()
        except Exception as exc:  # noqa: BLE001
            log.warning("swanlab.finish failed: %s", exc)
