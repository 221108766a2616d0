"""System metrics and training alerts for every training stage, as trainer callbacks.

- `SystemMetrics` adds to each log: `system/cpu_percent` (this process, 100 = one core busy), `system/rss_gb`,
  `system/samples_per_s` (completions for GRPO, sequences for SFT) and, when a GPU is there, `system/gpu_mem_gb`
  (allocated now), `system/gpu_peak_mem_gb` (peak so far) and `system/gpu_util` (%, when NVML can be read).
  Under `accelerate launch` each process measures itself; metrics.jsonl and the tracker get the main process's.
- `AlertMonitor` (pure: metric rows in, alerts out) checks the rules below after each log, with thresholds from the
  `alerts` block of conf/config.yaml. `TrainingAlerts` runs it inside training: each alert becomes a warning in the
  log, `alerts/<name>: 1` in metrics.jsonl and the tracker, and an entry in the stage's summary.json. An alert fires
  when its condition starts to hold and again only after the condition has cleared.

Rules, each judged over the last `window` logs unless said otherwise:
- `reward_flat`: max - min of `reward` over the last reward_flat_window logs <= reward_flat_range (a longer window:
  with 8 discrete rewards a step, three equal means in a row happen by chance, as in the measured 32-token run);
- `reward_collapse`: the mean `reward` fell by more than reward_drop x the best mean so far (and by at least 0.1);
- `zero_std_groups`: the mean of `frac_reward_zero_std` (groups whose completions all scored alike) >= zero_std_share;
- `entropy_collapse`: `entropy` <= entropy_ratio x its start (the max of the first `window` logs), entropy_patience
  logs in a row;
- `clipped_high`: the mean of `completions/clipped_ratio` (cut at max_completion_length) >= clipped_share;
- `format_stuck`: from step format_after_steps on, the mean `format_compliance` is not above its first window's mean
  + format_min_gain.

The rules are for GRPO stages. SFT stages get the system metrics and no alert rules (their entropy is meant to fall).
Held-out evaluation logs (`eval_*` keys, GRPO with `stage.trainer.eval_strategy=steps`) are not training: the rules
and the system metrics skip them, and the time they take does not count in the next log's samples/s.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path

from transformers import TrainerCallback

from r1pipeline.callbacks import is_eval_log
from r1pipeline.errors import ConfigError

log = logging.getLogger(__name__)

THRESHOLDS = {  # field: (lowest, highest) allowed
    "window": (1, 1000), "reward_flat_window": (2, 1000), "reward_flat_range": (0.0, math.inf),
    "reward_drop": (0.0, 1.0), "zero_std_share": (0.0, 1.0), "entropy_ratio": (0.0, 1.0), "entropy_patience": (1, 1000),
    "clipped_share": (0.0, 1.0),
    "format_after_steps": (1, 10**9), "format_min_gain": (0.0, 1.0),
}


def check_alerts_config(alerts: Mapping) -> None:
    """One ConfigError naming the field when the `alerts` block holds a value out of range."""
    if not isinstance(alerts.get("enabled"), bool):
        raise ConfigError(f"alerts.enabled: must be true or false, got {alerts.get('enabled')!r}")
    for name, (low, high) in THRESHOLDS.items():
        value = alerts.get(name)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        whole = isinstance(low, int)  # windows, entropy_patience, format_after_steps count logs or steps
        if not number or not low <= value <= high or (whole and value != int(value)):
            raise ConfigError(f"alerts.{name}: must be {'an integer' if whole else 'a number'} in [{low}, {high}], "
                              f"got {value!r}; see the alerts block in conf/config.yaml")


@dataclasses.dataclass(frozen=True)
class Alert:
    step: int
    name: str
    message: str


class AlertMonitor:
    """Feed it each log (`update(step, logs)`); it returns the alerts that start at this log."""

    def __init__(self, thresholds: Mapping):
        self.t = dict(thresholds)
        self.rows: list[dict] = []
        self.active: set[str] = set()
        self.raised: list[Alert] = []
        self.best_reward = -math.inf

    def update(self, step: int, logs: Mapping) -> list[Alert]:
        self.rows.append({k: v for k, v in logs.items() if isinstance(v, (int, float)) and math.isfinite(v)})
        found = {}
        for name in ("reward_flat", "reward_collapse", "zero_std_groups", "entropy_collapse", "clipped_high",
                     "format_stuck"):
            message = getattr(self, f"_{name}")(step)
            if message:
                found[name] = message
        new = [Alert(step, n, m) for n, m in found.items() if n not in self.active]
        self.active = set(found)
        self.raised += new
        return new

    def _last(self, key: str, n: int) -> list[float] | None:
        """The last n values of `key`, or None when fewer than n logs carried it."""
        values = [r[key] for r in self.rows if key in r]
        return values[-n:] if len(values) >= n else None

    def _reward_flat(self, step):
        w = self._last("reward", self.t["reward_flat_window"])
        if w and max(w) - min(w) <= self.t["reward_flat_range"]:
            return f"reward flat at {w[-1]:.3f} over the last {len(w)} logs (range {max(w) - min(w):.4f})"

    def _reward_collapse(self, step):
        w = self._last("reward", self.t["window"])
        if not w:
            return None
        mean = sum(w) / len(w)
        best, self.best_reward = self.best_reward, max(self.best_reward, mean)
        drop = best - mean
        if best > -math.inf and drop >= 0.1 and drop > self.t["reward_drop"] * abs(best):
            return f"reward collapsing: mean {mean:.3f} over the last {len(w)} logs, down from a best of {best:.3f}"

    def _zero_std_groups(self, step):
        w = self._last("frac_reward_zero_std", self.t["window"])
        if w and sum(w) / len(w) >= self.t["zero_std_share"]:
            return (f"{sum(w) / len(w):.0%} of groups had zero reward variance over the last {len(w)} logs: no "
                    f"learning signal (all completions of a prompt scored alike)")

    def _entropy_collapse(self, step):
        values = [r["entropy"] for r in self.rows if "entropy" in r]
        n, patience = self.t["window"], self.t["entropy_patience"]
        if len(values) < max(n, patience):
            return None
        start, recent = max(values[:n]), values[-patience:]
        if start > 0 and all(e <= self.t["entropy_ratio"] * start for e in recent):
            return (f"entropy collapse: {recent[-1]:.4f} nats/token, <= {self.t['entropy_ratio']:g} x its start "
                    f"({start:.4f}) for {patience} logs; completions are becoming identical (see samples.jsonl)")

    def _clipped_high(self, step):
        w = self._last("completions/clipped_ratio", self.t["window"])
        if w and sum(w) / len(w) >= self.t["clipped_share"]:
            return (f"{sum(w) / len(w):.0%} of completions hit max_completion_length over the last {len(w)} logs: "
                    f"answers are cut off (raise stage.trainer.max_completion_length)")

    def _format_stuck(self, step):
        values = [r["format_compliance"] for r in self.rows if "format_compliance" in r]
        n = self.t["window"]
        if step < self.t["format_after_steps"] or len(values) < n:
            return None
        first, last = sum(values[:n]) / n, sum(values[-n:]) / n
        if last <= first + self.t["format_min_gain"]:
            return (f"format compliance not rising: {last:.2f} over the last {n} logs after {step} steps, "
                    f"{first:.2f} at the start")


class TrainingAlerts(TrainerCallback):
    """Runs an AlertMonitor on every log of the world's main process; warns and marks `alerts/<name>` in the logs.
    A resumed run first replays `history` (the stage's metrics.jsonl, rewound to the checkpoint) through the monitor,
    so that its windows and the alerts already raised are those of an uninterrupted run."""

    def __init__(self, alerts_cfg: Mapping, kind: str, history: Path | None = None):
        self.enabled = bool(alerts_cfg.get("enabled", True)) and kind == "grpo"
        self.monitor = AlertMonitor({k: alerts_cfg[k] for k in THRESHOLDS})
        self.history = history

    def on_train_begin(self, args, state, control, **kw):
        if (not self.enabled or not state.global_step or not state.is_world_process_zero or self.history is None
                or not Path(self.history).is_file()):
            return
        for line in Path(self.history).read_text().splitlines():
            row = json.loads(line)
            if 0 < row.get("step", 0) <= state.global_step and "train_runtime" not in row and not is_eval_log(row):
                self.monitor.update(row["step"], row)

    def on_log(self, args, state, control, logs=None, **kw):
        if (not self.enabled or not logs or "train_runtime" in logs or is_eval_log(logs)
                or not state.is_world_process_zero):
            return
        for alert in self.monitor.update(state.global_step, logs):
            log.warning("ALERT %s at step %d: %s", alert.name, alert.step, alert.message)
            logs[f"alerts/{alert.name}"] = 1.0

    def raised(self) -> list[dict]:
        return [dataclasses.asdict(a) for a in self.monitor.raised]


def gpu_metrics(cuda) -> dict:
    """GPU memory allocated now and at its peak so far (GB; the peak is never reset, so the stage's final
    `peak_gpu_mem_gb` stays whole-run) and utilisation (%, when NVML answers); {} without a GPU."""
    if not cuda.is_available():
        return {}
    out = {"system/gpu_mem_gb": cuda.memory_allocated() / 1e9,
           "system/gpu_peak_mem_gb": cuda.max_memory_allocated() / 1e9}
    try:
        out["system/gpu_util"] = float(cuda.utilization())
    except Exception:  # noqa: BLE001 - NVML (pynvml) missing or unsupported: memory alone
        pass
    return out


class SystemMetrics(TrainerCallback):
    """Adds this process's CPU % and RSS, samples/s, and GPU memory/utilisation to each log."""

    def __init__(self):
        self.process, self.t0, self.step0, self.seen = None, None, 0, {}

    def on_train_begin(self, args, state, control, **kw):
        import psutil

        self.process = psutil.Process()
        self.process.cpu_percent(None)  # starts the CPU clock: the first reading covers the first steps
        self.t0, self.step0 = time.monotonic(), state.global_step

    def on_log(self, args, state, control, logs=None, **kw):
        import torch

        if logs is None or "train_runtime" in logs or self.process is None:
            return
        if is_eval_log(logs):  # restart the clocks: the next training log measures training alone
            self.process.cpu_percent(None)
            self.t0, self.step0 = time.monotonic(), state.global_step
            return
        now = time.monotonic()
        logs["system/cpu_percent"] = self.process.cpu_percent(None)
        logs["system/rss_gb"] = self.process.memory_info().rss / 1e9
        steps = state.global_step - self.step0
        if steps > 0 and now > self.t0:
            per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
            logs["system/samples_per_s"] = steps * per_step / (now - self.t0)
        logs.update(gpu_metrics(torch.cuda))
        self.t0, self.step0 = now, state.global_step
        for key, value in logs.items():
            if key.startswith("system/"):
                self.seen.setdefault(key, []).append(value)

    def report(self) -> dict:
        """For summary.json: peak memory, mean CPU % and throughput over the stage's logs."""
        out = {}
        for key, values in self.seen.items():
            name = key.split("/", 1)[1]
            peak = key in ("system/rss_gb", "system/gpu_mem_gb", "system/gpu_peak_mem_gb")
            out[f"{'peak' if peak else 'mean'}_{name}"] = round(max(values) if peak else sum(values) / len(values), 3)
        return out


class StageMonitor:
    """What a training stage adds to its trainer: `callbacks` (before JsonlMetrics and the trackers, so that these
    keys reach them) and, after training, `report()` for summary.json."""

    def __init__(self, alerts_cfg: Mapping, kind: str, history: Path | None = None):
        self.system, self.alerts = SystemMetrics(), TrainingAlerts(alerts_cfg, kind, history)
        self.callbacks = [self.system, self.alerts]

    def report(self) -> dict:
        return {"alerts": self.alerts.raised(), "system": self.system.report()}
