"""The whole pipeline under two processes (`hardware=cpu_accelerate hardware.num_processes=2`, gloo on CPU), started
the way a user starts it: every stage completes, each generating stage's rows are complete and not duplicated, each
process sampled its share, and the samples equal what one process draws at the same batch size."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ORDER, TINY_PIPELINE, compose_cfg
from r1pipeline.data import build_dataset
from r1pipeline.cli import run_stage
from r1pipeline.stages.pipeline import stage_cfg

REPO = Path(__file__).resolve().parent.parent
# Every stage of the recipe and distill (its traces are written by the main process and trained on by both).
STAGES = [*ORDER[:-1], "distill", "eval"]
# Small batches, so that every generating stage has at least two batches to share out; eval has three (uneven).
SHARED = [*TINY_PIPELINE, "tracking=none", "stage.cold_start.generation.batch_size=2",
          "stage.rejection_sampling.generation.batch_size=2", "stage.eval.generation.batch_size=2",
          "stage.eval.num_prompts=3", f"stage.order=[{','.join(STAGES)}]",
          # distill: sft2 teaches a half-width student; 2 prompts x 2 samples in batches of 2, 2 SFT steps
          "model@stage.distill.student=tiny_random", "stage.distill.student.config_overrides.hidden_size=16",
          "stage.distill.student.config_overrides.intermediate_size=32",
          "stage.distill.student.config_overrides.num_attention_heads=2",
          "stage.distill.student.config_overrides.num_key_value_heads=1", "stage.distill.num_prompts=2",
          "stage.distill.samples_per_prompt=2", "stage.distill.verify=[tag_count]", "stage.distill.min_score=0.25",
          "stage.distill.generation.max_new_tokens=8", "stage.distill.generation.batch_size=2",
          "stage.distill.trainer.max_steps=2", "stage.distill.trainer.per_device_train_batch_size=2",
          "stage.distill.trainer.gradient_accumulation_steps=1", "stage.distill.trainer.max_length=256"]


def _manifest(run_dir: Path, stage: str) -> dict:
    return json.loads((run_dir / stage / "manifest.json").read_text())


def _shares(per_process: list[dict]) -> list[tuple[int, int, str]]:
    return [(p["process"], p["sequences"], p["device"]) for p in per_process]


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory, embedded_model_dir):
    run_dir = tmp_path_factory.mktemp("two") / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "r1pipeline", *SHARED, "hardware=cpu_accelerate", "hardware.num_processes=2",
           f"run.dir={run_dir}"]
    res = subprocess.run(cmd, cwd=run_dir.parent, env=env, capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, (res.stdout + res.stderr)[-6000:]
    return run_dir


@pytest.mark.slow
def test_every_stage_completes_with_each_process_sampling_its_share(two_process_run):
    run_dir = two_process_run
    summary = json.loads((run_dir / "pipeline" / "summary.json").read_text())
    assert summary["status"] == "complete" and list(summary["stages"]) == STAGES
    assert all(_manifest(run_dir, s)["status"] == "complete" for s in STAGES)
    assert {(s["device"], s["processes"]) for s in summary["stages"].values()} == {("cpu", 2)}
    # one log per stage, written by the main process only
    assert sum("GRPO r1_zero:" in line for line in (run_dir / "r1_zero" / "log.txt").read_text().splitlines()) == 1

    cold = _manifest(run_dir, "cold_start")["metrics"]["per_method"]
    for method in ("r1_zero", "few_shot", "direct"):  # 2 prompts x 2 samples = 2 batches of 2: one per process
        assert cold[method]["samples"] == 4, method
        assert _shares(cold[method]["generation"]["per_process"]) == [(0, 2, "cpu"), (1, 2, "cpu")], method
    rows = [json.loads(line) for line in (run_dir / "cold_start" / "dataset.jsonl").read_text().splitlines()]
    assert len(rows) == _manifest(run_dir, "cold_start")["metrics"]["rows"] == sum(m["kept"] for m in cold.values())

    rs = _manifest(run_dir, "rejection_sampling")["metrics"]
    assert rs["filter"]["samples"] == 4 and _shares(rs["generation"]["per_process"]) == [(0, 2, "cpu"), (1, 2, "cpu")]
    rows = (run_dir / "rejection_sampling" / "dataset.jsonl").read_text().splitlines()
    assert len(rows) == rs["rows"] == rs["reasoning_rows"] + rs["non_reasoning_rows"]

    distill = _manifest(run_dir, "distill")
    traces = distill["metrics"]["traces"]  # 2 prompts x 2 samples = 2 batches of 2: one per process
    assert traces["samples"] == 4 and _shares(traces["generation"]["per_process"]) == [(0, 2, "cpu"), (1, 2, "cpu")]
    rows = (run_dir / "distill" / "dataset.jsonl").read_text().splitlines()
    assert len(rows) == traces["kept"] > 0 and not list((run_dir / "distill").glob(".*.tmp"))
    # both processes trained the student on those rows: each step logged once, the student's own architecture
    assert [json.loads(r)["step"] for r in (run_dir / "distill" / "metrics.jsonl").read_text().splitlines()
            if '"loss"' in r] == [1, 2]
    assert json.loads((run_dir / "distill" / "model" / "config.json").read_text())["hidden_size"] == 16

    ev = json.loads((run_dir / "eval" / "summary.json").read_text())
    samples = [json.loads(line) for line in (run_dir / "eval" / "samples.jsonl").read_text().splitlines()]
    test_rows = build_dataset(compose_cfg(SHARED).dataset)["test"].select(range(3))
    answers = [r["answer"] for r in test_rows]
    for model in ("base", "r1_zero", "sft1", "reasoning_rl", "sft2"):
        passes = ev["generation"][model]["small_sums"]
        # greedy: 3 prompts x 1 = 2 batches of 2 and 1, one per process
        assert _shares(passes["greedy"]["per_process"]) == [(0, 2, "cpu"), (1, 1, "cpu")], model
        # sampled: 3 prompts x 2 samples = 3 batches of 2: two for process 0, one for process 1
        assert _shares(passes["sampled"]["per_process"]) == [(0, 4, "cpu"), (1, 2, "cpu")], model
        mine = [s for s in samples if s["model"] == model]
        assert [s["answer"] for s in mine if s["pass"] == "greedy"] == answers, model  # each prompt once
        assert [s["answer"] for s in mine if s["pass"] == "sampled"] == [a for a in answers for _ in range(2)], model


@pytest.mark.slow
def test_two_processes_sample_what_one_process_samples(two_process_run, tmp_path):
    """The base model's eval samples, drawn again in one process: the same texts, sample for sample."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the launched processes: the same arithmetic, the same samples
    try:
        cfg = stage_cfg(compose_cfg(SHARED, run_dir=tmp_path / "run"), "eval")  # eval as the pipeline ran it
        cfg.stage.inputs.models = ["base"]
        run_stage(cfg)
    finally:
        torch.set_num_threads(before)

    def responses(run_dir):
        rows = [json.loads(line) for line in (run_dir / "eval" / "samples.jsonl").read_text().splitlines()]
        return [r["response"] for r in rows if r["model"] == "base"]

    assert responses(tmp_path / "run") == responses(two_process_run) and len(responses(tmp_path / "run")) == 9
