"""Per-stage log file: everything logged while a stage runs also lands in `<stage dir>/log.txt`."""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from r1pipeline.callbacks import STEP_LOG

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextlib.contextmanager
def stage_logging(stage_dir: Path):
    from r1pipeline.processes import is_main_process

    if not is_main_process():  # one log file per stage, written by the main process; the others log to their console
        yield
        return
    handler = logging.FileHandler(Path(stage_dir) / "log.txt")
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    STEP_LOG.setLevel(logging.INFO)
    for logger in (root, STEP_LOG):
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger in (root, STEP_LOG):
            logger.removeHandler(handler)
        handler.close()
