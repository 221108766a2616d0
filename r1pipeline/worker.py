"""One rank of a launched stage: `python -m r1pipeline.worker <run dir>/frozen_config.yaml`.

Started by `accelerate launch` (see r1pipeline/launcher.py and the run's launch.sh). It composes nothing: it reads the
frozen config that the Hydra entry point wrote, so every rank has the same config and run directory. Which process
this is, and its device, come from accelerate's PartialState (r1pipeline/processes.py), never from argv; only the
main process creates directories and writes files (r1pipeline.rundir and the trainers' callbacks check it).
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from omegaconf import OmegaConf

from r1pipeline.errors import ConfigError
from r1pipeline.processes import init

log = logging.getLogger("r1pipeline")


def load_frozen(path: Path):
    """The frozen config, checked to belong to the run directory it lies in."""
    path = Path(path).resolve()
    if not path.is_file():
        raise ConfigError(f"frozen config {path} does not exist; start stages with `python -m r1pipeline ...`, "
                          f"which writes it")
    cfg = OmegaConf.load(path)
    OmegaConf.set_struct(cfg, True)
    if Path(cfg.run.dir).resolve() != path.parent:
        raise ConfigError(f"run.dir: the frozen config in {path.parent} names another run directory "
                          f"({cfg.run.dir}); re-launch with `python -m r1pipeline ...` instead of moving it")
    return cfg


def main(argv: list[str] | None = None) -> dict:
    from r1pipeline.config import check_devices
    from r1pipeline.models import materialize_all
    from r1pipeline.stages import dispatch

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m r1pipeline.worker <run dir>/frozen_config.yaml")
    try:
        cfg = load_frozen(Path(argv[0]))
        # Before the process group exists: in one, transformers saves a model on rank 0 only, so a later rank
        # converting the embedded model would cache a checkpoint without weights. Alone, each rank writes a whole
        # copy and renames it into place (the first wins); once converted, this is a lookup.
        materialize_all(cfg)
        state = init(cfg.hardware)
        logging.basicConfig(level=logging.INFO if state.is_main_process else logging.WARNING,
                            format=f"[process {state.process_index}] %(asctime)s %(levelname)s %(name)s: %(message)s")
        check_devices(cfg)  # the rest was validated before the config was frozen; the GPUs are this machine's
        return dispatch(cfg)
    except ConfigError as exc:
        log.error("%s", exc)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
