"""stage=distill: the teacher's verified traces become SFT data for a smaller student with its own model config; the
student is the stage's model, so stage=eval scores teacher and student side by side."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import compose_cfg, reload_in_fresh_process
from r1pipeline.cli import run_stage
from r1pipeline.config import validate
from r1pipeline.errors import ConfigError

# The teacher is the tiny random model (the model group, `base`); the student the same family at half the width.
# Random weights never solve the task, so a trace is "verified" by tag_count's credit for the prefilled <think>.
STUDENT = ["model@stage.student=tiny_random", "stage.student.config_overrides.hidden_size=16",
           "stage.student.config_overrides.intermediate_size=32", "stage.student.config_overrides.num_attention_heads=2",
           "stage.student.config_overrides.num_key_value_heads=1"]
TINY_DISTILL = ["model=tiny_random", "stage=distill", "stage.inputs.model=base", "dataset.train_size=8",
                "dataset.test_size=4", "stage.num_prompts=3", "stage.samples_per_prompt=2", "stage.verify=[tag_count]",
                "stage.min_score=0.25", "stage.generation.max_new_tokens=8", "stage.generation.batch_size=6",
                "stage.trainer.max_steps=2", "stage.trainer.per_device_train_batch_size=2",
                "stage.trainer.max_length=256", "tracking=none", *STUDENT]


def test_distill_trains_the_student_on_verified_teacher_traces_and_eval_compares_them(tmp_path, embedded_model_dir):
    torch.set_num_threads(1)
    run_dir = tmp_path / "run"
    summary = run_stage(compose_cfg(TINY_DISTILL, run_dir=run_dir))
    traces = summary["metrics"]["traces"]
    rows = [json.loads(line) for line in open(summary["outputs"]["dataset"])]
    assert traces["samples"] == 6 and traces["kept"] == len(rows) > 0
    assert all(r["method"] == "distill" and r["source_model"] == "base" and r["score"] >= 0.25 for r in rows)
    assert rows[0]["messages"][-1]["role"] == "assistant" and rows[0]["messages"][-1]["content"].startswith("<think>")
    assert summary["steps"] == 2  # the student's SFT steps
    student = reload_in_fresh_process(summary["outputs"]["model"])
    assert student["new_tokens"] > 0 and not student["empty"]
    config = json.loads((run_dir / "distill" / "model" / "config.json").read_text())
    assert config["hidden_size"] == 16  # the student's own architecture, not the teacher's (32)
    # eval: teacher (base) and student (distill) in one table
    ev = run_stage(compose_cfg(["model=tiny_random", "stage=eval", "stage.inputs.models=[base,distill]",
                                "dataset.test_size=4", "stage.num_prompts=2", "stage.k=1",
                                "stage.generation.max_new_tokens=8", "tracking=none"], run_dir=run_dir))
    assert list(ev["metrics"]) == ["base", "distill"]
    assert ev["metrics"]["distill"]["small_sums"]["prompts"] == 2
    assert "| distill |" in (run_dir / "eval" / "results.md").read_text()


def test_distill_from_a_teacher_path_outside_the_run(tmp_path, embedded_model_dir):
    # stage.teacher: a local checkpoint (here the embedded model's converted directory) instead of a stage
    cfg = compose_cfg([*TINY_DISTILL, f"stage.teacher={embedded_model_dir}", "stage.num_prompts=1",
                       "stage.samples_per_prompt=1", "stage.min_score=0"], run_dir=tmp_path / "run")
    validate(cfg)
    summary = run_stage(cfg)
    assert summary["inputs"]["teacher"] == str(embedded_model_dir)
    assert summary["metrics"]["traces"]["kept"] == 1


@pytest.mark.parametrize("override, message", [
    ("stage.student.dtype=float64", r"stage\.student\.dtype: 'float64' is not one of"),  # named as the student's
    ("stage.teacher=/no/such/dir", r"/no/such/dir"),  # a teacher path that cannot load
    ("stage.trainer.max_length=long", r"stage\.trainer\.max_length"),  # the student's SFTConfig field types
])
def test_distill_config_errors_name_the_field(override, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        validate(compose_cfg([*TINY_DISTILL, override], run_dir=tmp_path / "run"))
