"""Experiment trackers as trainer callbacks, chosen by the `tracking` group. A tracker never stops training.

- `swanlab`: config, every logged metric (per-step reward, per-reward mean/std, lengths, loss) through transformers'
  `SwanLabCallback`, and the scored samples of samples.jsonl as `swanlab.Text`. Offline by default (no network, no
  account): logs land in `<stage dir>/swanlog/` and `swanlab sync <that dir>` uploads them later. `tracking.mode=cloud`
  or `SWANLAB_MODE=cloud` switches to the cloud; when that fails (no network, no key) it falls back to offline.
- `tensorboard`: the same metrics and samples as TensorBoard event files in `<stage dir>/tensorboard/`.
- `none`: only the run directory's own files.

The eval stage sends its scores the same way (`log_eval`): each score of each model and benchmark as a scalar, the
model's place in the table as the step (base = 0, then the stages in pipeline order), and the results table as text.

One tracker run per job, on the world's main process only. Every tracker callback is wrapped in `GuardedCallback`,
and `finish_tracking` runs in a `finally`, so offline logs are closed cleanly even when training fails.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from omegaconf import OmegaConf
from transformers import TrainerCallback

from r1pipeline.errors import ConfigError

log = logging.getLogger(__name__)
BACKENDS = ("none", "swanlab", "tensorboard")
SWANLAB_MODES = ("offline", "local", "cloud", "disabled")


def check(tracking_cfg) -> None:
    """The `tracking` group: a known backend (and SwanLab mode)."""
    if tracking_cfg.backend not in BACKENDS:
        raise ConfigError(f"tracking.backend: {tracking_cfg.backend!r} is unknown; choose one of {list(BACKENDS)}")
    mode = tracking_cfg.get("mode")
    if tracking_cfg.backend == "swanlab" and mode not in SWANLAB_MODES:
        raise ConfigError(f"tracking.mode: {mode!r} is not a SwanLab mode; choose one of {list(SWANLAB_MODES)}")


class GuardedCallback(TrainerCallback):
    """Forwards every event to a tracker's callbacks; one that raises is logged once and switched off.

    One instance per tracker (transformers warns when two callbacks of one class are added)."""

    def __init__(self, inners: list[TrainerCallback], name: str):
        self.inners, self.name, self.broken = list(inners), name, set()

    def __getattribute__(self, attr):
        if attr.startswith("on_"):
            inners = object.__getattribute__(self, "inners")

            def call(*args, **kwargs):
                for i, inner in enumerate(inners):
                    method = getattr(inner, attr, None)
                    if i in self.broken or method is None:
                        continue
                    try:
                        method(*args, **kwargs)
                    except Exception as exc:  # noqa: BLE001 - a tracker must never stop training
                        self.broken.add(i)
                        log.warning("tracker %s failed (%s: %s); training continues without it", self.name,
                                    type(exc).__name__, exc)

            return call
        return object.__getattribute__(self, attr)


class SampleText(TrainerCallback):
    """At each log, sends the rows appended to samples.jsonl since the last log to `log_text(texts, step)`.

    samples.jsonl (written just before, by `callbacks.SamplesJsonl`) is the single source of the scored samples."""

    def __init__(self, samples_path: Path, log_text):
        self.path, self.log_text, self.offset = Path(samples_path), log_text, 0

    def on_log(self, args, state, control, **kw):
        if not self.path.is_file():
            return
        with self.path.open() as f:
            f.seek(self.offset)
            rows = [json.loads(line) for line in f if line.strip()]
            self.offset = f.tell()
        if rows:
            self.log_text([_sample_text(r) for r in rows], state.global_step)


def _sample_text(row: dict) -> str:
    scores = ", ".join(f"{k}={v}" for k, v in row.get("rewards", {}).items())
    return f"[step {row.get('step')}] rewards: {scores}\n--- prompt ---\n{row.get('prompt')}\n--- completion ---\n{row.get('completion')}"


def tracking_callbacks(cfg, stage_dir: Path, is_main: bool = True) -> list[TrainerCallback]:
    """The configured tracker's callbacks (none on other ranks); each one guarded."""
    backend = cfg.tracking.backend
    if backend == "none" or not is_main:
        return []
    builders = {"swanlab": _swanlab, "tensorboard": _tensorboard}
    try:
        callbacks = builders[backend](cfg, Path(stage_dir))
    except Exception as exc:  # noqa: BLE001 - no tracker at all is still a run
        log.warning("tracker %s could not start (%s: %s); training continues without it", backend,
                    type(exc).__name__, exc)
        return []
    return [GuardedCallback(callbacks, backend)]


def swanlab_mode(cfg) -> str:
    return os.environ.get("SWANLAB_MODE") or cfg.tracking.mode


def _swanlab_init(cfg, stage_dir: Path) -> None:
    """One SwanLab run for this stage, logging into <stage dir>/swanlog (offline unless the mode says cloud)."""
    import swanlab

    mode, logdir = swanlab_mode(cfg), str(stage_dir / "swanlog")
    kwargs = {"project": cfg.tracking.project, "experiment_name": f"{Path(cfg.run.dir).name}/{cfg.stage.name}",
              "config": OmegaConf.to_container(cfg, resolve=True), "logdir": logdir}
    try:
        swanlab.init(mode=mode, **kwargs)
    except Exception as exc:  # noqa: BLE001 - fall back to offline logs, never stop
        log.warning("swanlab.init(mode=%s) failed (%s: %s); logging offline to %s, upload later with swanlab sync",
                    mode, type(exc).__name__, exc, logdir)
        swanlab.init(mode="offline", **kwargs)


def _swanlab(cfg, stage_dir: Path) -> list[TrainerCallback]:
    import swanlab
    from transformers.integrations import SwanLabCallback

    _swanlab_init(cfg, stage_dir)

    def log_text(texts, step):
        swanlab.log({"samples": [swanlab.Text(t, caption=f"sample {i}") for i, t in enumerate(texts)]}, step=step)

    return [SwanLabCallback(), SampleText(stage_dir / "samples.jsonl", log_text)]


def _tensorboard(cfg, stage_dir: Path) -> list[TrainerCallback]:
    from torch.utils.tensorboard import SummaryWriter
    from transformers.integrations import TensorBoardCallback

    writer = SummaryWriter(log_dir=str(stage_dir / "tensorboard"))
    writer.add_text("config", "```\n" + OmegaConf.to_yaml(cfg, resolve=True) + "\n```")

    def log_text(texts, step):
        writer.add_text("samples", "\n\n".join(f"```\n{t}\n```" for t in texts), global_step=step)

    return [TensorBoardCallback(tb_writer=writer), SampleText(stage_dir / "samples.jsonl", log_text)]


def finish_tracking(cfg, error: BaseException | None = None) -> None:
    """Close the tracker run, marked crashed when `error` is given, so offline logs stay complete and syncable."""
    if cfg.tracking.backend != "swanlab":
        return
    try:
        import swanlab

        if swanlab.get_run() is not None:
            if error is None:
                swanlab.finish()
            else:
                swanlab.finish(state="crashed", error=f"{type(error).__name__}: {error}")
    except Exception as exc:  # noqa: BLE001
        log.warning("swanlab.finish failed: %s", exc)


def eval_scalars(rows: list[dict]) -> list[tuple[int, dict]]:
    """(step, {"<benchmark>/<score>": value}) per model of eval's rows, in table order: every score without its
    interval bounds, and the mean length."""
    from r1pipeline.evaluation import score_columns

    keys = [k for k in score_columns() if not k.endswith(("_lo", "_hi"))] + ["mean_length"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    return [(step, {f"{r['dataset']}/{k}": float(r[k]) for r in rows if r["model"] == model for k in keys if k in r})
            for step, model in enumerate(models)]


def log_eval(cfg, stage_dir: Path, rows: list[dict], table: str) -> None:
    """Eval's results to the configured tracker (call it on the main process); a failure is logged, never raised."""
    backend = cfg.tracking.backend
    if backend == "none":
        return
    steps = ", ".join(f"{s} = {m}" for s, m in enumerate(dict.fromkeys(r["model"] for r in rows)))
    try:
        {"swanlab": _swanlab_eval, "tensorboard": _tensorboard_eval}[backend](
            cfg, Path(stage_dir), eval_scalars(rows), f"steps: {steps}\n\n{table}")
    except Exception as exc:  # noqa: BLE001 - the results are in results.md/.csv whatever the tracker does
        log.warning("tracker %s could not take the eval results (%s: %s); they are in results.md and results.csv",
                    backend, type(exc).__name__, exc)


def _swanlab_eval(cfg, stage_dir: Path, scalars: list[tuple[int, dict]], table: str) -> None:
    import swanlab

    _swanlab_init(cfg, stage_dir)
    try:
        for step, values in scalars:
            swanlab.log(values, step=step)
        swanlab.log({"results": swanlab.Text(table, caption="eval results")})
    finally:
        swanlab.finish()


def _tensorboard_eval(cfg, stage_dir: Path, scalars: list[tuple[int, dict]], table: str) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(stage_dir / "tensorboard"))
    try:
        for step, values in scalars:
            for tag, value in values.items():
                writer.add_scalar(tag, value, global_step=step)
        writer.add_text("results", table)
    finally:
        writer.close()
