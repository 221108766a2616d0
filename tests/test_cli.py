"""The command line a user types: `python -m r1pipeline ...` in a subprocess."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(args, cwd, timeout=600):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "r1pipeline", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_bad_input_gives_one_clear_error_and_no_run_directory(tmp_path):
    res = _run(["+reward.acuracy.weight=1"], tmp_path)
    assert res.returncode == 2
    assert "reward.acuracy: unknown reward" in res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    assert not any((tmp_path / "outputs").rglob("*.yaml")), "a rejected config left files behind"


@pytest.mark.parametrize("override,message", [
    # a value of the wrong type, caught against trl.GRPOConfig's field type (it used to reach torch's optimizer)
    ("stage.trainer.learning_rate=abc",
     "stage.trainer.learning_rate: 'abc' is not a number; set a number, e.g. stage.trainer.learning_rate=1e-06"),
    # a run directory that cannot be created (it used to end in three tracebacks)
    ("run.dir=/proc/nope", "run.dir: cannot write /proc/nope (No such file or directory in /proc); pick a directory "
                           "you can write to, e.g. run.dir=outputs/my_run"),
    # a negative size (it used to be reported as a missing template column)
    ("dataset.train_size=-5", "dataset.train_size: -5 must be an integer of at least 1, e.g. dataset.train_size=2000"),
])
def test_a_bad_value_gives_one_message_naming_the_field_before_anything_loads(tmp_path, override, message):
    res = _run(["experiment=smoke", "tracking=none", override], tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode == 2, out[-3000:]
    errors = [line for line in out.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and errors[0].endswith(message), out[-3000:]
    assert "Traceback" not in out
    # no data was built (the reward audit reads the first rows) and no model loaded (GRPO names it when it has)
    assert "reward audit" not in out and "GRPO r1_zero" not in out
    assert not [p for p in tmp_path.rglob("*") if p.is_file()], "a rejected config left files behind"


@pytest.mark.slow  # trains the tiny model in a subprocess
def test_smoke_experiment_runs_from_the_command_line(tmp_path):
    res = _run(["experiment=smoke"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    (summary,) = list((tmp_path / "outputs").rglob("r1_zero/summary.json"))
    data = json.loads(summary.read_text())
    assert data["status"] == "complete" and data["steps"] == 2
    assert (summary.parent / "model" / "model.safetensors").is_file()
    assert "step 2/2 | reward" in res.stdout + res.stderr


@pytest.mark.slow
def test_embedded_model_smoke_run(tmp_path, embedded_model_dir):
    """The real default model, one short GRPO step: the default path a user takes, minus most of the steps."""
    res = _run(["stage.trainer.max_steps=1", "stage.trainer.per_device_train_batch_size=4",
                "stage.trainer.num_generations=4", "stage.trainer.max_completion_length=24",
                "dataset.train_size=16", "dataset.test_size=4"], tmp_path, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    (summary,) = list((tmp_path / "outputs").rglob("r1_zero/summary.json"))
    data = json.loads(summary.read_text())
    assert data["steps"] == 1 and "reward" in data["metrics"]
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(summary.parent / "model")
    assert abs(model.num_parameters() - 134.5e6) < 1e6
