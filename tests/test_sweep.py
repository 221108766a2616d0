"""Multirun sweeps: each job in its own directory, a failed job does not stop the others, a summary table at the end,
and two sweeps started together never share a directory."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import TINY
from r1pipeline.sweep import markdown_table

REPO = Path(__file__).resolve().parent.parent


def _sweep(cwd: Path, *overrides: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "r1pipeline", "-m", *overrides], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_reward_mix_sweep_with_a_failing_job_writes_the_summary_table(tmp_path, embedded_model_dir):
    # Job order: (countdown, batch 6) fails validation (6 is not a multiple of the group size 4), then the
    # other three still run; the two batch-4 jobs train. A second sweep starts at the same moment.
    tiny = [o for o in TINY if "per_device_train_batch_size" not in o]
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    main = _sweep(tmp_path / "a", "stage=r1_zero", "dataset=countdown", "reward=countdown,r1_zero",
                  "stage.trainer.per_device_train_batch_size=6,4", *tiny)
    other = _sweep(tmp_path / "b", "stage=r1_zero", *TINY, "stage.trainer.num_generations=1")
    out_other, _ = other.communicate(timeout=600)
    out, _ = main.communicate(timeout=900)

    assert main.returncode == 1, out[-4000:]  # a job failed: the sweep says so in its exit status
    (sweep_dir,) = (tmp_path / "a" / "outputs" / "multirun").glob("*/*")
    (other_dir,) = (tmp_path / "b" / "outputs" / "multirun").glob("*/*")
    assert sweep_dir.name != other_dir.name  # same second, different directories (microseconds in the name)
    assert other.returncode == 1 and "num_generations: 1 is too small" in out_other

    jobs = sorted(d.name.split("_", 1)[0] for d in sweep_dir.iterdir() if d.is_dir())
    assert jobs == ["0", "1", "2", "3"]
    rows = list(csv.DictReader((sweep_dir / "summary.csv").open()))
    status = {r["overrides"]: r["status"] for r in rows}
    assert status == {
        "reward=countdown stage.trainer.per_device_train_batch_size=6": "failed",
        "reward=countdown stage.trainer.per_device_train_batch_size=4": "complete",
        "reward=r1_zero stage.trainer.per_device_train_batch_size=6": "failed",
        "reward=r1_zero stage.trainer.per_device_train_batch_size=4": "complete",
    }
    for row in rows:
        if row["status"] == "complete":
            assert float(row["reward"]) >= 0 and row["format_compliance"] != "" and row["steps"] == "2"
            verifier = "reward/countdown" if "reward=countdown" in row["overrides"] else "reward/correct"
            assert row[verifier] != "" and row["error"] == ""
        else:
            assert "divisible by num_generations=4" in row["error"] and row["reward"] == ""
    by_mix = {r["overrides"].split()[0]: r for r in rows if r["status"] == "complete"}
    # each mix fills its own reward columns only: r1_zero's verifier is `correct`, TinyZero's is `countdown`
    assert by_mix["reward=r1_zero"]["reward/countdown"] == "" and by_mix["reward=countdown"]["reward/correct"] == ""

    md = (sweep_dir / "summary.md").read_text()
    assert md in out  # printed as well
    assert "| job | overrides | status | reward | format_compliance |" in md and md.count("| failed |") == 2

    # one offline SwanLab run per completed job (the default tracker), with metrics and the sampled completions
    for job in sweep_dir.iterdir():
        if job.is_dir() and json.loads((job / "job.json").read_text())["status"] == "complete":
            (run,) = (job / "r1_zero" / "swanlog").glob("run-*")
            assert list((run / "media" / "text").glob("*.txt")), "samples were not logged as swanlab.Text"


def test_markdown_table_escapes_cells_and_leaves_missing_values_blank():
    table = markdown_table(["job", "overrides", "reward"], [{"job": "0", "overrides": "a=|x|", "reward": 0.123456},
                                                           {"job": "1", "overrides": "b=1"}])
    assert table == ("| job | overrides | reward |\n|---|---|---|\n"
                     "| 0 | a=\\|x\\| | 0.1235 |\n| 1 | b=1 |  |\n")


def _job(sweep, num, stage, run_dir, eval_summary=None):
    job = sweep / f"{num}_stage={stage}"
    (job / ".hydra").mkdir(parents=True)
    (job / "job.json").write_text(json.dumps({"status": "complete", "stage": stage, "overrides": [f"stage={stage}"],
                                              "run_dir": str(run_dir), "error": None}))
    (run_dir / stage).mkdir(parents=True, exist_ok=True)
    (run_dir / stage / "summary.json").write_text(json.dumps({"stage": stage, "metrics": {}}))
    if eval_summary is not None:
        (run_dir / "eval").mkdir(exist_ok=True)
        (run_dir / "eval" / "summary.json").write_text(json.dumps(eval_summary))


def test_the_sweep_summary_fills_the_eval_score_of_every_job_that_evaluated(tmp_path):
    from r1pipeline.sweep import write_summary

    sweep = tmp_path / "sweep"
    # a pipeline ending in eval (its own summary holds no score: the eval stage's does), an eval job, a training job
    _job(sweep, 0, "pipeline", tmp_path / "a", {"eval_score": 0.42, "eval_score_free": 0.61})
    _job(sweep, 1, "eval", tmp_path / "b", {"eval_score": 0.125, "eval_score_free": 0.25})
    _job(sweep, 2, "r1_zero", tmp_path / "c")
    _, rows = write_summary(sweep)
    assert [(r["eval_score"], r["eval_score_free"]) for r in rows] == [(0.42, 0.61), (0.125, 0.25), (None, None)]
    csv_rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert [(r["eval_score"], r["eval_score_free"]) for r in csv_rows] == [("0.42", "0.61"), ("0.125", "0.25"),
                                                                          ("", "")]
