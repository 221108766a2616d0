"""Trainer callbacks that make a run readable: step timing, a one-line log per step, metrics.jsonl, samples.jsonl.

Held-out evaluation during training (GRPO with `stage.trainer.eval_strategy=steps`) arrives as a log of its own at
the step it ran, every key prefixed `eval_` (TRL's convention): metrics.jsonl keeps it as a row with its step,
the progress line reads "held-out eval", step timing skips it. All file writing happens on the world's main process
only.
"""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback

from r1pipeline.rewards.text import completion_text, last_user_text, prefill_text

log = logging.getLogger(__name__)
# Step lines go to the console through the progress bar and to the stage log through this logger only.
STEP_LOG = logging.getLogger("r1pipeline.steps")
STEP_LOG.propagate = False


def _finite(v):
    return v if not isinstance(v, float) or math.isfinite(v) else None


def is_eval_log(logs) -> bool:
    """A log of the held-out evaluation (TRL's `eval_reward`, transformers' `eval_runtime`, ...), not of training."""
    return any(k.startswith("eval_") for k in logs)


class StepTimer(TrainerCallback):
    """Adds `step_time` (seconds per optimizer step, averaged since the previous log) to the logs."""

    def __init__(self):
        self._t0, self._times = None, []

    def on_step_begin(self, args, state, control, **kw):
        self._t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        if self._t0 is not None:
            self._times.append(time.perf_counter() - self._t0)

    def on_log(self, args, state, control, logs=None, **kw):
        if logs is not None and self._times and "train_runtime" not in logs and not is_eval_log(logs):
            logs["step_time"] = sum(self._times) / len(self._times)
            self._times = []


class JsonlMetrics(TrainerCallback):
    """Appends every log dict (with its step) as one JSON line to `path`."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_log(self, args, state, control, logs=None, **kw):
        if state.is_world_process_zero and logs:
            row = {"step": state.global_step, **{k: _finite(v) for k, v in logs.items()}}
            with self.path.open("a") as f:
                f.write(json.dumps(row, default=str) + "\n")


class SampleRecorder:
    """Sees every scored batch of a GRPO stage: the configured rewards (wrapped in `SafeReward`) report to it as they
    score one. It keeps the first `per_step` completions of each batch with every reward's score (`SamplesJsonl`
    writes them at each log), and logs each of `batch_metrics` ({name: f(completions, prompts) -> float}) once per
    batch through TRL's `log_metric`, which averages it over the logging step and the processes like TRL's own
    metrics. This uses only TRL's public reward-function contract, not trainer internals."""

    def __init__(self, per_step: int, batch_metrics: dict | None = None):
        self.per_step = per_step
        self.batch_metrics = dict(batch_metrics or {})
        self.rows: list[dict] = []
        self._key = None
        # Set by the stage once its trainer exists: True while training, False during held-out evaluation (TRL's
        # own test, `model.training`); rows are marked with the split they were sampled from.
        self.training = lambda: True

    def record(self, name: str, step: int, prompts, completions, scores, log_metric=None) -> None:
        key = (step, id(completions))
        if key != self._key:  # a new batch: the first reward to see it opens the rows
            self._key = key
            prompts = prompts if prompts is not None else [None] * len(completions)
            training = self.training()
            # A training batch is sampled during step `step` + 1; evaluation runs after step `step` completed.
            self.rows.extend({"step": step + 1 if training else step, "split": "train" if training else "test",
                              "prompt": _prompt_text(p), "completion": completion_text(c), "rewards": {}}
                             for p, c in list(zip(prompts, completions))[: self.per_step])
            self._open = self.rows[-min(self.per_step, len(completions)):] if completions else []
            if log_metric is not None and completions:
                for metric, measure in self.batch_metrics.items():
                    log_metric(metric, measure(completions, prompts))
        for row, score in zip(self._open, scores):
            row["rewards"][name] = score

    def drain(self) -> list[dict]:
        rows, self.rows = self.rows, []
        return rows


class SamplesJsonl(TrainerCallback):
    """Writes the recorder's scored samples to `samples.jsonl`: step, split (train, or test for the held-out
    evaluation), prompt, completion, each reward's score."""

    def __init__(self, recorder: SampleRecorder, path: Path):
        self.recorder, self.path = recorder, Path(path)

    def _flush(self, state):
        rows = self.recorder.drain()
        if state.is_world_process_zero and rows:
            with self.path.open("a") as f:
                for row in rows:
                    f.write(json.dumps(row) + "\n")

    def on_log(self, args, state, control, **kw):
        self._flush(state)

    def on_train_end(self, args, state, control, **kw):
        self._flush(state)


def _prompt_text(prompt) -> str:
    """What samples.jsonl shows of a prompt: its last user turn, and the assistant prefill the model continued."""
    prefill = prefill_text(prompt)
    return last_user_text(prompt) + (f"\n[assistant prefill] {prefill}" if prefill else "")


def _reward_parts(logs: dict, prefix: str) -> list[str]:
    """`reward mean±std` and each reward's mean, from TRL's `<prefix>reward`, `<prefix>rewards/<name>/mean` keys."""
    if f"{prefix}reward" not in logs:
        return []
    parts = [f"reward {logs[f'{prefix}reward']:.3f}±{logs.get(f'{prefix}reward_std') or 0.0:.2f}"]
    per = [f"{k.split('/')[1]} {v:.2f}" for k, v in logs.items()
           if k.startswith(f"{prefix}rewards/") and k.endswith("/mean") and v is not None]
    return parts + ([" ".join(per)] if per else [])


def format_step_line(logs: dict, step: int, max_steps: int) -> str:
    """One readable line per logging step from TRL's GRPO/SFT log keys."""
    parts = [f"step {step}/{max_steps}", *_reward_parts(logs, "")]
    if "loss" in logs:
        parts.append(f"loss {logs['loss']:.4f}")
    if "mean_token_accuracy" in logs:
        parts.append(f"tok-acc {logs['mean_token_accuracy']:.3f}")
    if "completions/mean_length" in logs:
        parts.append(f"len {logs['completions/mean_length']:.0f}")
    if "completions/clipped_ratio" in logs:
        parts.append(f"clipped {100 * logs['completions/clipped_ratio']:.0f}%")
    if "format_compliance" in logs:
        parts.append(f"format-ok {100 * logs['format_compliance']:.0f}%")
    if "frac_reward_zero_std" in logs:
        parts.append(f"no-signal groups {100 * logs['frac_reward_zero_std']:.0f}%")
    if "rollout/tokens_per_s" in logs:
        parts.append(f"rollout {logs['rollout/tokens_per_s']:.0f} tok/s "
                     f"({100 * logs.get('rollout/share_of_bound', 0.0):.1f}% of bandwidth bound)")
    if "step_time" in logs:
        parts.append(f"{logs['step_time']:.1f} s/step")
    if "system/cpu_percent" in logs:
        parts.append(_system_part(logs))
    alerts = [k.split("/", 1)[1] for k in logs if k.startswith("alerts/")]
    if alerts:
        parts.append("ALERT " + ", ".join(alerts))
    return " | ".join(parts)


def format_eval_line(logs: dict, step: int, max_steps: int) -> str:
    """One readable line for a held-out evaluation log (TRL's GRPO eval keys, `eval_` + the training key)."""
    parts = [f"held-out eval at step {step}/{max_steps}", *_reward_parts(logs, "eval_")]
    if "eval_completions/mean_length" in logs:
        parts.append(f"len {logs['eval_completions/mean_length']:.0f}")
    if "eval_format_compliance" in logs:
        parts.append(f"format-ok {100 * logs['eval_format_compliance']:.0f}%")
    if "eval_runtime" in logs:
        parts.append(f"{logs['eval_runtime']:.1f} s")
    return " | ".join(parts)


def _system_part(logs: dict) -> str:
    """`r1pipeline.monitor.SystemMetrics`'s keys: process CPU and memory, GPU when there is one, throughput."""
    text = f"cpu {logs['system/cpu_percent']:.0f}% rss {logs['system/rss_gb']:.1f} GB"
    if "system/gpu_mem_gb" in logs:
        text += f" gpu {logs['system/gpu_mem_gb']:.1f} GB (peak {logs.get('system/gpu_peak_mem_gb', 0.0):.1f})"
    if "system/gpu_util" in logs:
        text += f" {logs['system/gpu_util']:.0f}% util"
    if "system/samples_per_s" in logs:
        text += f" {logs['system/samples_per_s']:.2f} samples/s"
    return text


class ReadableProgress(ProgressCallback):
    """TRL/transformers' progress bar, but each log is one readable line instead of a raw dict dump."""

    def on_log(self, args, state, control, logs=None, **kw):
        if state.is_world_process_zero and logs and "train_runtime" not in logs:
            line = (format_eval_line if is_eval_log(logs) else format_step_line)(logs, state.global_step,
                                                                                state.max_steps)
            if self.training_bar is not None:
                self.training_bar.write(line)
            else:
                log.info(line)
            STEP_LOG.info(line)


def install(trainer, callbacks) -> None:
    """Swap the default dict-dumping progress printer for ours, then add ours in order (before any tracker)."""
    trainer.remove_callback(ProgressCallback)
    for cb in callbacks:
        trainer.add_callback(cb)
