"""Trackers: offline SwanLab needs no network, a cloud run without network falls back to offline logs, eval results
reach the tracker too, and no tracker failure ever reaches training or eval."""
from __future__ import annotations

import json
import logging

import pytest
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from conftest import TINY, compose_cfg, fake_eval_row
from r1pipeline.tracking import GuardedCallback, SampleText, finish_tracking, tracking_callbacks


@pytest.fixture
def no_network(monkeypatch):
    """SwanLab's cloud is unreachable and no key or mode is set in the environment."""
    for var in ("SWANLAB_MODE", "SWANLAB_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SWANLAB_API_HOST", "http://127.0.0.1:9")
    monkeypatch.setenv("SWANLAB_WEB_HOST", "http://127.0.0.1:9")


def _state(step=1):
    state = TrainerState()
    state.global_step = step
    return state


def test_swanlab_is_the_default_and_offline():
    cfg = compose_cfg()
    assert (cfg.tracking.backend, cfg.tracking.mode) == ("swanlab", "offline")


@pytest.mark.parametrize("mode", ["offline", "cloud"])
def test_swanlab_without_network_logs_offline(tmp_path, no_network, caplog, mode):
    # offline: works as is; cloud: the login fails (no key, no network) and the run falls back to offline logs
    cfg = compose_cfg([*TINY, f"tracking.mode={mode}"], run_dir=tmp_path)
    with caplog.at_level(logging.WARNING, logger="r1pipeline.tracking"):
        callbacks = tracking_callbacks(cfg, tmp_path, is_main=True)
    try:
        (guarded,) = callbacks
        assert [type(c).__name__ for c in guarded.inners] == ["SwanLabCallback", "SampleText"]
        fallback = [r.getMessage() for r in caplog.records if "falling back" in r.getMessage() or "logging offline" in r.getMessage()]
        assert bool(fallback) == (mode == "cloud"), caplog.text
    finally:
        finish_tracking(cfg)
    (run,) = (tmp_path / "swanlog").glob("run-*")
    assert run.is_dir()


def test_other_ranks_and_none_get_no_tracker(tmp_path):
    cfg = compose_cfg(TINY, run_dir=tmp_path)
    assert tracking_callbacks(cfg, tmp_path, is_main=False) == []
    assert tracking_callbacks(compose_cfg([*TINY, "tracking=none"], run_dir=tmp_path), tmp_path) == []


def test_a_tracker_that_cannot_start_leaves_training_without_it(tmp_path, monkeypatch, caplog):
    import swanlab

    def broken_init(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(swanlab, "init", broken_init)
    cfg = compose_cfg(TINY, run_dir=tmp_path)
    with caplog.at_level(logging.WARNING, logger="r1pipeline.tracking"):
        assert tracking_callbacks(cfg, tmp_path) == []
    assert "tracker swanlab could not start (OSError: disk full); training continues without it" in caplog.text


def test_a_failing_tracker_callback_is_switched_off_not_raised(caplog):
    class Exploding(TrainerCallback):
        calls = 0

        def on_log(self, *args, **kwargs):
            Exploding.calls += 1
            raise ConnectionError("network gone")

    sent = []

    class Fine(TrainerCallback):
        def on_log(self, *args, logs=None, **kwargs):
            sent.append(logs)

    guarded = GuardedCallback([Exploding(), Fine()], "swanlab")
    args, state, control = TrainingArguments(output_dir="/tmp/unused", report_to="none"), _state(), TrainerControl()
    with caplog.at_level(logging.WARNING, logger="r1pipeline.tracking"):
        assert guarded.on_log(args, state, control, logs={"reward": 1.0}) is None
        assert guarded.on_log(args, state, control, logs={"reward": 1.0}) is None
    assert Exploding.calls == 1 and guarded.broken == {0} and len(sent) == 2  # the other callback goes on
    assert "tracker swanlab failed (ConnectionError: network gone); training continues without it" in caplog.text


def test_sample_text_sends_each_new_sample_once(tmp_path):
    path = tmp_path / "samples.jsonl"
    sent = []
    cb = SampleText(path, lambda texts, step: sent.append((step, texts)))
    cb.on_log(None, _state(1), None)  # no file yet: nothing to send
    row = {"step": 1, "prompt": "Using the numbers [1, 2]", "completion": "<think>x</think>", "rewards": {"format": 0.0}}
    path.write_text(json.dumps(row) + "\n")
    cb.on_log(None, _state(1), None)
    with path.open("a") as f:
        f.write(json.dumps({**row, "step": 2, "completion": "<answer>3</answer>"}) + "\n")
    cb.on_log(None, _state(2), None)
    cb.on_log(None, _state(3), None)
    assert [(step, len(texts)) for step, texts in sent] == [(1, 1), (2, 1)]
    assert sent[1][1][0] == ("[step 2] rewards: format=0.0\n--- prompt ---\nUsing the numbers [1, 2]\n"
                             "--- completion ---\n<answer>3</answer>")


def test_tensorboard_writes_config_metrics_and_samples(tmp_path):
    cfg = compose_cfg([*TINY, "tracking=tensorboard"], run_dir=tmp_path)
    (guarded,) = tracking_callbacks(cfg, tmp_path)
    board, samples = guarded.inners
    assert (type(board).__name__, type(samples).__name__) == ("TensorBoardCallback", "SampleText")
    (tmp_path / "samples.jsonl").write_text(json.dumps({"step": 1, "prompt": "p", "completion": "c", "rewards": {}}) + "\n")
    samples.on_log(None, _state(1), None)
    board.tb_writer.close()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_eval_results_reach_tensorboard_and_a_broken_tracker_only_warns(tmp_path, monkeypatch, caplog):
    from r1pipeline import tracking

    rows = [fake_eval_row("base", "countdown", 0.1), fake_eval_row("sft2", "countdown", 0.5)]
    assert tracking.eval_scalars(rows)[1] == (1, {
        "countdown/greedy/strict": 0.5, "countdown/greedy/free": 0.6, "countdown/pass@1/strict": 0.5,
        "countdown/pass@1/free": 0.6, "countdown/maj@k/strict": 0.5, "countdown/maj@k/free": 0.6,
        "countdown/mean_length": 12.5})
    cfg = compose_cfg(["stage=eval", "tracking=tensorboard"], run_dir=tmp_path)
    tracking.log_eval(cfg, tmp_path, rows, "| table |")
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(tracking, "_swanlab_eval", broken)
    with caplog.at_level(logging.WARNING, logger="r1pipeline.tracking"):
        tracking.log_eval(compose_cfg(["stage=eval"], run_dir=tmp_path), tmp_path, rows, "| table |")
    assert "tracker swanlab could not take the eval results (OSError: disk full)" in caplog.text


def test_eval_results_reach_an_offline_swanlab_run(tmp_path):
    from r1pipeline import tracking

    cfg = compose_cfg(["stage=eval"], run_dir=tmp_path)
    tracking.log_eval(cfg, tmp_path, [fake_eval_row("base", "countdown", 0.1)], "| table |")
    (run,) = (tmp_path / "swanlog").glob("run-*")
    assert list((run / "media" / "text").glob("*.txt")), "the results table was not logged as swanlab.Text"
