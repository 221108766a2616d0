"""System metrics and training alerts: the alert rules on metric sequences, their config checks, the metrics
callback, and the step line."""
from __future__ import annotations

import os
import time
from types import SimpleNamespace

import pytest

from conftest import compose_cfg
from r1pipeline.callbacks import format_step_line
from r1pipeline.errors import ConfigError
from r1pipeline.monitor import AlertMonitor, SystemMetrics, TrainingAlerts, check_alerts_config, gpu_metrics

DEFAULTS = dict(compose_cfg().alerts)
# The default main job, `python -m r1pipeline` (R1-Zero on small_sums), as measured (2026-11-23, metrics.jsonl, its
# training rows): format 0 -> 1.00, held-out format 0.09 -> 0.91, entropy 0.95 -> 0.22 (23% of its start), a quarter
# to three quarters of the groups without signal from step 8 (format learnt, sums mostly wrong).
MAIN_JOB = {"entropy": [0.9549, 0.8148, 0.8557, 0.5824, 0.631, 0.4466, 0.4002, 0.3301, 0.3637, 0.3601, 0.2397, 0.2164],
            "reward": [0.0, 0.0625, 0.3125, 0.5, 0.4375, 0.9375, 1.125, 1.0, 1.0625, 0.9375, 0.9375, 1.0625],
            "frac_reward_zero_std": [1.0, 0.75, 0.0, 0.0, 0.0, 0.25, 0.25, 0.5, 0.5, 0.75, 0.75, 0.75],
            "completions/clipped_ratio": [0.1875, 0.25, 0.1875, 0.125, 0.0, 0.0, 0.125, 0.0, 0.0, 0.0625, 0.0625, 0.0],
            "format_compliance": [0.0, 0.0625, 0.3125, 0.5, 0.4375, 0.875, 0.8125, 0.9375, 0.9375, 0.9375, 0.9375, 1.0]}

# R1-Zero with open-r1's tag_count at lr 3e-5, 20 steps (`python -m r1pipeline +reward.tag_count.weight=0.5
# stage.trainer.learning_rate=3e-5 stage.trainer.max_steps=20 stage.trainer.eval_strategy=no`, 2026-11-23): format
# 1.00 from step 9, then every completion is "a + b + c = <a guess></think> <answer> ...": the four completions of a
# prompt near-identical, entropy 0.99 -> 0.07, most groups without signal.
TAG_COUNT_COLLAPSE = {
    "entropy": [0.9859, 0.6761, 0.7445, 0.484, 0.8571, 0.7241, 0.3367, 0.2754, 0.2356, 0.193, 0.2021, 0.1654, 0.1469,
                0.1716, 0.1379, 0.0813, 0.0699, 0.0828, 0.0849, 0.0765],
    "reward": [0.1875, 0.9375, 0.625, 1.0312, 0.8203, 1.0234, 1.5938, 1.7969, 1.625, 1.5, 1.3125, 1.5, 1.625, 1.5625,
               1.6875, 1.5, 1.75, 1.6875, 1.6875, 1.5625],
    "frac_reward_zero_std": [0.0, 0.0, 0.25, 0.0, 0.0, 0.25, 0.0, 0.25, 0.75, 1.0, 0.5, 1.0, 0.5, 0.75, 0.75, 1.0, 1.0,
                             0.75, 0.75, 0.75],
    "completions/clipped_ratio": [0.3125, 0.1875, 0.0625, 0.0625, 0.25, 0.375] + [0.0] * 4 + [0.125] + [0.0] * 9,
    "format_compliance": [0.0, 0.5, 0.25, 0.5625, 0.375, 0.5625, 0.8125, 0.9375, 1.0, 1.0, 0.875] + [1.0] * 9}

# The former default (Countdown, tag_count, lr 5e-5, 8 completions, T=0.7) with 32-token completions, 6 steps, as
# measured after the prefill fix (2026-11-23): every completion is cut at 32 tokens from step 2 on.
CLIPPED_RUN = {"entropy": [0.3671, 0.2005, 0.1522, 0.193, 0.2437, 0.1777],
               "reward": [0.25, 0.3438, 0.375, 0.3438, 0.3125, 0.375],
               "frac_reward_zero_std": [0.0, 0.0, 1.0, 0.0, 0.0, 1.0],
               "completions/clipped_ratio": [0.5, 1.0, 1.0, 1.0, 1.0, 1.0],
               "format_compliance": [0.0] * 6}

# The same 32-token run measured before the prefill fix (commit 9df842b: TRL opened a fresh assistant turn after the
# "<think>" prefill): every completion was `<answer>` from step 5 on.
COLLAPSE_RUN = {"entropy": [0.7145, 0.9319, 0.8347, 0.6088, 0.0766, 0.0112],
                "reward": [0.125, 0.125, 0.125, 0.1875, 0.25, 0.25],
                "frac_reward_zero_std": [1.0, 1.0, 0.0, 0.0, 1.0, 1.0],
                "completions/clipped_ratio": [0.5, 0.5, 0.25, 0.5, 0.0, 0.0],
                "format_compliance": [0.0] * 6}


def series(**columns) -> list[dict]:
    """Rows of logs from columns of equal length (None = key absent at that step)."""
    n = len(next(iter(columns.values())))
    return [{k: v[i] for k, v in columns.items() if v[i] is not None} for i in range(n)]


ALERT_CASES = [
    # (what, thresholds changed from conf/config.yaml, logs at steps 1..n, alerts as (step, name))
    ("R1-Zero with tag_count collapsing onto one guess per prompt: entropy 0.99 -> 0.07, then no signal", {},
     series(**TAG_COUNT_COLLAPSE), [(16, "entropy_collapse"), (17, "zero_std_groups")]),
    ("the same run at the former entropy threshold (0.25) warned at step 10, while still learning the format",
     {"entropy_ratio": 0.25}, series(**TAG_COUNT_COLLAPSE), [(10, "entropy_collapse"), (17, "zero_std_groups")]),
    ("32-token completions on Countdown: all cut off", {}, series(**CLIPPED_RUN), [(4, "clipped_high")]),
    ("the collapse onto '<answer>' measured before the prefill fix (32-token completions, 6 steps): entropy 0.93 -> "
     "0.011", {}, series(**COLLAPSE_RUN), [(6, "entropy_collapse")]),
    ("the same run with a 3-log reward_flat window: a mean of 0.125 three times by chance (std 0.09) looks flat",
     {"reward_flat_window": 3}, series(**COLLAPSE_RUN), [(3, "reward_flat"), (6, "entropy_collapse")]),
    ("every group alike for three logs in a row", {},
     series(frac_reward_zero_std=[0.0, 1.0, 1.0, 1.0]), [(4, "zero_std_groups")]),
    ("a reward flat for five logs", {},
     series(reward=[0.2, 0.125, 0.125, 0.125, 0.125, 0.125]), [(6, "reward_flat")]),
    ("the default main job as measured: reward rising, format 0 -> 1.00, entropy 0.95 -> 0.22 as the format locks in",
     {}, series(**MAIN_JOB), []),
    ("entropy sharpening to half its start is learning, not collapse", {},
     series(entropy=[0.08, 0.09, 0.07, 0.06, 0.05, 0.045, 0.045]), []),
    ("a single low entropy log is not enough (patience 2)", {},
     series(entropy=[0.08, 0.08, 0.08, 0.01, 0.08, 0.08]), []),
    ("reward collapsing from its best", {},
     series(reward=[0.5, 0.6, 0.7, 0.7, 0.2, 0.1, 0.1]), [(7, "reward_collapse")]),
    ("a reward falling from 0.05 to 0.0 is below the absolute floor of 0.1", {},
     series(reward=[0.05, 0.06, 0.05, 0.0, 0.01, 0.0]), []),
    ("completions cut at max_completion_length", {},
     series(**{"completions/clipped_ratio": [0.5, 0.95, 0.95, 0.95]}), [(4, "clipped_high")]),
    ("format compliance stuck at 0 after 10 steps", {},
     series(format_compliance=[0.0] * 12), [(10, "format_stuck")]),
    ("format compliance rising slowly but surely", {"format_after_steps": 4},
     series(format_compliance=[0.0, 0.0, 0.1, 0.2, 0.2, 0.3]), []),
    ("an alert fires again only after its condition cleared", {},
     series(frac_reward_zero_std=[1, 1, 1, 1, 0, 0, 0, 1, 1, 1]), [(3, "zero_std_groups"), (10, "zero_std_groups")]),
    ("non-finite values are ignored, not compared", {},
     series(reward=[float("nan")] * 5, entropy=[float("inf"), 0.08, 0.08, 0.08, 0.08]), []),
]


@pytest.mark.parametrize("what,changed,rows,expected", ALERT_CASES, ids=[c[0] for c in ALERT_CASES])
def test_alert_rules_on_metric_sequences(what, changed, rows, expected):
    monitor = AlertMonitor({**DEFAULTS, **changed})
    fired = [(a.step, a.name) for step, row in enumerate(rows, 1) for a in monitor.update(step, row)]
    assert fired == expected
    assert [(a.step, a.name) for a in monitor.raised] == expected


def test_training_alerts_warn_mark_the_logs_and_list_what_fired(caplog):
    alerts = TrainingAlerts(DEFAULTS, kind="grpo")
    state = SimpleNamespace(global_step=0, is_world_process_zero=True)
    logs = []
    for step, entropy in enumerate([0.08, 0.08, 0.08, 0.01, 0.01], 1):
        state.global_step = step
        logs.append({"entropy": entropy})
        alerts.on_log(None, state, None, logs=logs[-1])
    assert logs[-1] == {"entropy": 0.01, "alerts/entropy_collapse": 1.0} and "alerts/entropy_collapse" not in logs[-2]
    assert [a["name"] for a in alerts.raised()] == ["entropy_collapse"] and alerts.raised()[0]["step"] == 5
    assert "ALERT entropy_collapse at step 5: entropy collapse: 0.0100 nats/token" in caplog.text


def test_sft_stages_and_disabled_alerts_raise_nothing():
    state = SimpleNamespace(global_step=5, is_world_process_zero=True)
    for alerts in (TrainingAlerts(DEFAULTS, kind="sft"), TrainingAlerts({**DEFAULTS, "enabled": False}, "grpo")):
        for _ in range(5):
            alerts.on_log(None, state, None, logs={"entropy": 0.001, "frac_reward_zero_std": 1.0})
        assert alerts.raised() == []


CONFIG_ERRORS = [
    # (override, message)
    ("alerts.window=0", r"alerts\.window: must be an integer in \[1, 1000\], got 0"),
    ("alerts.reward_flat_window=1", r"alerts\.reward_flat_window: must be an integer in \[2, 1000\], got 1"),
    ("alerts.entropy_ratio=1.5", r"alerts\.entropy_ratio: must be a number in \[0\.0, 1\.0\], got 1\.5"),
    ("alerts.entropy_patience=1.5", r"alerts\.entropy_patience: must be an integer"),
    ("alerts.enabled=maybe", r"alerts\.enabled: must be true or false"),
]


@pytest.mark.parametrize("override,message", CONFIG_ERRORS)
def test_alert_thresholds_are_checked_with_the_field_named(override, message):
    from r1pipeline.config import validate

    with pytest.raises(ConfigError, match=message):
        validate(compose_cfg([override]))
    check_alerts_config(DEFAULTS)  # the shipped defaults pass


def test_system_metrics_report_cpu_memory_and_throughput():
    metrics = SystemMetrics()
    args = SimpleNamespace(per_device_train_batch_size=8, gradient_accumulation_steps=2, world_size=1)
    state = SimpleNamespace(global_step=0)
    before, t0 = os.times(), time.monotonic()
    metrics.on_train_begin(args, state, None)
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:  # a busy step: up to one core, less on a loaded machine
        pass
    state.global_step = 3
    logs = {"loss": 1.0}
    metrics.on_log(args, state, None, logs=logs)
    after, t1 = os.times(), time.monotonic()
    busy = 100 * (after.user + after.system - before.user - before.system) / (t1 - t0)  # this process's CPU %
    assert set(logs) >= {"loss", "system/cpu_percent", "system/rss_gb", "system/samples_per_s"}
    assert abs(logs["system/cpu_percent"] - busy) < 15 and 0.05 < logs["system/rss_gb"] < 64
    assert 3 * 16 / 1.0 < logs["system/samples_per_s"] < 3 * 16 / 0.25  # 48 samples in ~0.3 s
    assert set(metrics.report()) >= {"mean_cpu_percent", "peak_rss_gb", "mean_samples_per_s"}


class FakeCuda:
    """The torch.cuda calls gpu_metrics makes, for a machine without a GPU (utilization needs NVML)."""

    def __init__(self, available, util=None):
        self.available, self.util = available, util

    def is_available(self):
        return self.available

    def memory_allocated(self):
        return 1.25e9

    def max_memory_allocated(self):
        return 3.5e9

    def utilization(self):
        if self.util is None:
            raise ModuleNotFoundError("pynvml")
        return self.util


@pytest.mark.parametrize("cuda,expected", [
    (FakeCuda(False), {}),  # no GPU: nothing
    (FakeCuda(True, util=87), {"system/gpu_mem_gb": 1.25, "system/gpu_peak_mem_gb": 3.5, "system/gpu_util": 87.0}),
    (FakeCuda(True), {"system/gpu_mem_gb": 1.25, "system/gpu_peak_mem_gb": 3.5}),  # no NVML: memory alone
])
def test_gpu_metrics(cuda, expected):
    assert gpu_metrics(cuda) == expected


def test_step_line_shows_system_metrics_and_alerts():
    logs = {"reward": 0.125, "reward_std": 0.0, "system/cpu_percent": 183.4, "system/rss_gb": 2.06,
            "system/gpu_mem_gb": 1.25, "system/gpu_peak_mem_gb": 3.5, "system/gpu_util": 87.0,
            "system/samples_per_s": 0.214, "alerts/entropy_collapse": 1.0}
    assert format_step_line(logs, 6, 6) == ("step 6/6 | reward 0.125±0.00 | cpu 183% rss 2.1 GB gpu 1.2 GB (peak 3.5) "
                                            "87% util 0.21 samples/s | ALERT entropy_collapse")
