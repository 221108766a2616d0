"""Run directories and the hand-off between stages.

A run directory holds one subdirectory per stage (`<run>/<stage>/`), each with a `manifest.json` saying what it
read, its config, its final metrics and where its model/dataset is. A later stage names its input
(`init_from: sft1`) and `resolve_stage_output` turns that into a path or says which stage to run first.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from omegaconf import OmegaConf

from r1pipeline.errors import ConfigError

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"


def is_main_process() -> bool:
    """Rank 0 of a launched stage (RANK comes from `accelerate launch`); a single process is always rank 0."""
    return int(os.environ.get("RANK", "0")) == 0


def stage_dir(cfg, name: str | None = None) -> Path:
    if not cfg.run.dir:
        raise ConfigError("run.dir: not set; run through `python -m r1pipeline` or set run.dir=<directory>")
    return Path(cfg.run.dir) / (name or cfg.stage.name)


def check_stage_dir(cfg) -> None:
    """Refuse a non-empty stage directory unless resuming (never mix two runs' files)."""
    d = stage_dir(cfg)
    if d.exists() and any(d.iterdir()) and not cfg.run.resume:
        raise ConfigError(f"run.dir: {d} is not empty; pass run.resume=true to continue it, or pick a new run.dir")


def prepare_stage_dir(cfg) -> Path:
    """Create this stage's directory and write its resolved `config.yaml`; refuse a non-empty directory unless
    resuming (never mix two runs' files). Only rank 0 writes; other ranks wait until it has claimed the directory."""
    d = stage_dir(cfg)
    if not is_main_process():
        _wait_for_main_process(d)
        return d
    check_stage_dir(cfg)
    d.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, d / "config.yaml", resolve=True)
    return d


def _wait_for_main_process(d: Path, timeout_s: float = 900.0) -> None:
    """Other ranks of a launched stage go on once rank 0 has claimed the stage directory (its manifest exists), so
    nothing they write can make rank 0's emptiness check fail. If rank 0 fails first, the launcher stops them."""
    deadline = time.monotonic() + timeout_s
    while not (d / MANIFEST).is_file():
        if time.monotonic() > deadline:
            raise RuntimeError(f"rank {os.environ.get('RANK')}: rank 0 did not claim {d} within {timeout_s:.0f} s")
        time.sleep(0.2)


def read_manifest(d: Path) -> dict | None:
    p = Path(d) / MANIFEST
    return json.loads(p.read_text()) if p.is_file() else None


def write_manifest(d: Path, cfg, status: str, **fields) -> dict:
    if not is_main_process():
        return {}
    manifest = {"stage": cfg.stage.name, "status": status, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "config": OmegaConf.to_container(cfg, resolve=True), **fields}
    (Path(d) / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
    return manifest


def resolve_stage_output(cfg, stage: str, key: str = "model", field: str = "init_from/data_from") -> Path:
    """Path of `key` ("model" or "dataset") written by an earlier `stage` of this run; `field` names the input."""
    d = stage_dir(cfg, stage)
    manifest = read_manifest(d)
    if manifest is None or manifest.get("status") != "complete":
        raise ConfigError(f"stage.{field}: stage {stage!r} has no complete output in {d}; "
                          f"run stage {stage} first (python -m r1pipeline stage={stage} run.dir={cfg.run.dir})")
    if key not in manifest.get("outputs", {}):
        raise ConfigError(f"stage {stage!r} in {d} produced no {key}; it cannot be used as this input")
    return Path(manifest["outputs"][key])


def last_checkpoint(d: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(d)) if Path(d).is_dir() else None


def write_json(path: Path, obj) -> None:
    if not is_main_process():
        return
    Path(path).write_text(json.dumps(obj, indent=2, default=str))


def input_model(cfg, name: str, field: str = "init_from") -> tuple[str, bool]:
    """(path, random_init) of the model a stage starts from: `base` = the model group, else an earlier stage's."""
    if name == "base":
        from r1pipeline.models import resolve_model_path

        return resolve_model_path(cfg.model.path), bool(cfg.model.random_init)
    return str(resolve_stage_output(cfg, name, "model", field)), False


def is_complete(cfg, name: str) -> bool:
    manifest = read_manifest(stage_dir(cfg, name))
    return manifest is not None and manifest.get("status") == "complete"


def finish_stage(out: Path, cfg, inputs: dict, result: dict) -> dict:
    """Write summary.json and the complete manifest from a stage's result (`outputs`, `metrics`, anything else)."""
    summary = {"stage": cfg.stage.name, "status": "complete", "inputs": inputs, **result}
    write_json(Path(out) / "summary.json", summary)
    write_manifest(out, cfg, "complete", inputs=inputs, outputs=result.get("outputs", {}),
                   metrics=result.get("metrics", {}))
    return summary


class StageFailed(ConfigError):
    """A stage ran but produced nothing usable (e.g. no sample survived its filters); `metrics` say why and go into
    its manifest, marked failed."""

    def __init__(self, message: str, metrics: dict):
        super().__init__(message)
        self.metrics = metrics


def execute_stage(cfg, inputs: dict, work) -> dict:
    """The frame every stage that writes an output shares: prepare its directory, log into it, mark the manifest
    running, run `work(stage_dir) -> result`, then write summary.json and the complete manifest (or, on StageFailed,
    the failed manifest with its metrics). Returns the summary."""
    from r1pipeline.logs import stage_logging

    out = prepare_stage_dir(cfg)
    t0 = time.monotonic()
    with stage_logging(out):
        write_manifest(out, cfg, "running", inputs=inputs)
        try:
            result = work(out)
        except StageFailed as exc:
            write_manifest(out, cfg, "failed", inputs=inputs, metrics=exc.metrics)
            raise
        summary = finish_stage(out, cfg, inputs, result)
        log.info("%s done in %.0f s: %s", cfg.stage.name, result.get("wall_s", time.monotonic() - t0), out)
    return summary
