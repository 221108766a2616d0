"""Run directories and the hand-off between stages.

A run directory holds one subdirectory per stage (`<run>/<stage>/`), each with a `manifest.json` saying what it
read, its config, its final metrics and where its model/dataset is. A later stage names its input
(`inputs: {model: sft1}`) and `resolve_stage_output` turns that into a path or says which stage to run first.

Under several processes every process runs a stage's frame (`execute_stage`): the main process alone writes files
(each renamed into place, the complete manifest last) and every process waits at the end of the stage, so that the
next stage never reads a manifest that still says running (r1pipeline/processes.py).

Resume (`run.resume=true`): `last_checkpoint` is the newest `checkpoint-N` that a kill did not cut short
(`checkpoint_complete`), and `rewind_jsonl` cuts a stage's per-step logs back to its step (r1pipeline/training.py).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import NoReturn

from omegaconf import OmegaConf

from r1pipeline import processes
from r1pipeline.errors import ConfigError

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"


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
    resuming (never mix two runs' files). Every process checks before any writes (they all see the same directory,
    so they all pass or all fail); then the main process alone creates it, and every process goes on once it exists."""
    d = stage_dir(cfg)
    check_stage_dir(cfg)
    processes.wait_for_everyone()
    if processes.is_main_process():
        d.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, d / "config.yaml", resolve=True)
    processes.wait_for_everyone()
    return d


def read_manifest(d: Path) -> dict | None:
    p = Path(d) / MANIFEST
    return json.loads(p.read_text()) if p.is_file() else None


def write_manifest(d: Path, cfg, status: str, **fields) -> dict:
    """The stage's manifest, written by the main process only (renamed into place: a reader never sees half of it)."""
    if not processes.is_main_process():
        return {}
    manifest = {"stage": cfg.stage.name, "status": status, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "config": OmegaConf.to_container(cfg, resolve=True), **fields}
    _write_atomic(Path(d) / MANIFEST, json.dumps(manifest, indent=2, default=str))
    return manifest


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def resolve_stage_output(cfg, stage: str, key: str = "model", field: str = "inputs.model") -> Path:
    """Path of `key` ("model" or "dataset") written by an earlier `stage` of this run; `field` names the input."""
    d = stage_dir(cfg, stage)
    manifest = read_manifest(d)
    if manifest is None or manifest.get("status") != "complete":
        raise ConfigError(f"stage.{field}: stage {stage!r} has no complete output in {d}; "
                          f"run stage {stage} first (python -m r1pipeline stage={stage} run.dir={cfg.run.dir})")
    if key not in manifest.get("outputs", {}):
        raise ConfigError(f"stage {stage!r} in {d} produced no {key}; it cannot be used as this input")
    return Path(manifest["outputs"][key])


# What a trainer checkpoint holds once transformers' `_save_checkpoint` has finished with it: the weights (a full
# model, a LoRA adapter, sharded safetensors, or DeepSpeed's global_step* directory) and, written last,
# trainer_state.json at the checkpoint's own step. A kill -9 during the save leaves a directory without the state
# file, with a truncated one, or (for a DeepSpeed save) without its shards.
WEIGHTS = ("model.safetensors", "adapter_model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
           "pytorch_model.bin.index.json")


def checkpoint_complete(path: Path) -> bool:
    """Whether `path` (`checkpoint-N`) was saved to the end: trainer_state.json parses and says step N, and the
    weights it points to are there and not empty."""
    path = Path(path)
    try:
        step = int(path.name.rsplit("-", 1)[1])
        state = json.loads((path / "trainer_state.json").read_text())
    except (IndexError, ValueError, OSError):
        return False
    if not isinstance(state, dict) or state.get("global_step") != step:
        return False
    weights = [path / name for name in WEIGHTS if (path / name).is_file()]
    if any(w.stat().st_size == 0 for w in weights):
        return False
    for index in (w for w in weights if w.name.endswith(".index.json")):  # every shard an index names
        try:
            shards = set(json.loads(index.read_text())["weight_map"].values())
        except (ValueError, KeyError, TypeError):
            return False
        if not all((path / shard).is_file() for shard in shards):
            return False
    return bool(weights) or any(p.is_dir() for p in path.glob("global_step*"))


def checkpoints(d: Path) -> list[Path]:
    """The `checkpoint-N` directories of a stage directory, newest (highest N) first."""
    found = [p for p in Path(d).glob("checkpoint-*") if p.is_dir() and p.name.rsplit("-", 1)[1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.rsplit("-", 1)[1]), reverse=True)


def last_checkpoint(d: Path) -> str | None:
    """The newest complete checkpoint of a stage directory (None when there is none), what run.resume=true trains
    on from. Newer ones that a kill left half-written are skipped with a warning and removed by the main process, so
    that neither this resume nor the trainer's own rotation of checkpoints ever takes one."""
    for ckpt in checkpoints(d) if Path(d).is_dir() else []:
        if checkpoint_complete(ckpt):
            return str(ckpt)
        log.warning("resume: %s is incomplete (a save was interrupted); skipping it", ckpt)
        if processes.is_main_process():
            shutil.rmtree(ckpt, ignore_errors=True)
    return None


def checkpoint_step(checkpoint: str | None) -> int:
    """The optimizer step a checkpoint was saved at (0 for none: training starts over)."""
    return int(Path(checkpoint).name.rsplit("-", 1)[1]) if checkpoint else 0


def rewind_jsonl(path: Path, step: int) -> int:
    """Keep the rows of a per-step log (metrics.jsonl, samples.jsonl) up to `step`, the step training resumes after,
    so that every step is logged once: rows a killed run wrote after its last checkpoint are trained and logged again,
    and so are the end-of-training rows (`train_runtime`). A line cut by the kill is dropped too. Renamed into place by
    the main process; returns the rows dropped."""
    path = Path(path)
    if not path.is_file() or not processes.is_main_process():
        return 0
    kept, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            dropped += 1
            continue
        if isinstance(row, dict) and row.get("step", 0) <= step and "train_runtime" not in row:
            kept.append(line)
        else:
            dropped += 1
    if dropped:
        _write_atomic(path, "".join(f"{line}\n" for line in kept))
    return dropped


def share_jsonl(path: Path, rows: list[dict]) -> Path:
    """A JSON-lines file that every process of the stage reads next (distill's traces, which its own SFT trains on):
    the main process writes it and renames it into place, and every process waits until it is there. Without the
    wait a later process could read it before it exists, or half of it."""
    if processes.is_main_process():
        _write_atomic(Path(path), "".join(json.dumps(r) + "\n" for r in rows))
    processes.wait_for_everyone()
    return Path(path)


def write_json(path: Path, obj) -> None:
    """A JSON file written by the main process only, renamed into place."""
    if processes.is_main_process():
        _write_atomic(Path(path), json.dumps(obj, indent=2, default=str))


def input_model(cfg, name: str, field: str = "inputs.model") -> tuple[str, bool]:
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
    """The frame every stage that writes an output shares, run by every process of the stage: prepare its directory,
    log into it, mark the manifest running, run `work(stage_dir) -> result`, check that every process finished, write
    summary.json and the complete manifest, and wait for everyone, so that no process reads this stage's output
    before the manifest says complete. When any process fails, every process stops with the same error and the
    manifest says failed (with a StageFailed's metrics). Returns the summary."""
    from r1pipeline.logs import stage_logging

    out = prepare_stage_dir(cfg)
    t0 = time.monotonic()
    with stage_logging(out):
        write_manifest(out, cfg, "running", inputs=inputs)
        try:
            result = work(out)
            processes.exchange([])  # did every process finish? Nothing is marked complete before they all have.
        except processes.ProcessFailed as failed:  # every process learned it from the same exchange
            _fail(out, cfg, inputs, failed.error)
        except Exception as exc:  # only this process knows: tell the others (they stop at their next exchange)
            with contextlib.suppress(processes.ProcessFailed):
                processes.exchange([], error=exc)
            _fail(out, cfg, inputs, exc)
        summary = finish_stage(out, cfg, inputs, result)
        log.info("%s done in %.0f s: %s", cfg.stage.name, result.get("wall_s", time.monotonic() - t0), out)
    processes.wait_for_everyone()
    return summary


def _fail(out: Path, cfg, inputs: dict, error: BaseException) -> NoReturn:
    write_manifest(out, cfg, "failed", inputs=inputs, error=f"{type(error).__name__}: {error}",
                   metrics=getattr(error, "metrics", {}))
    raise error from None
