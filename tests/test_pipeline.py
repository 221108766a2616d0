"""The whole recipe on the tiny random model: `stage=pipeline experiment=pipeline_smoke` runs every stage into one run
directory and ends with the eval table; a re-run with run.resume=true skips complete stages and continues an
interrupted one from its last checkpoint; the final model answers through `stage=infer`."""
from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import ORDER, TINY_PIPELINE, compose_cfg
from r1pipeline import stages
from r1pipeline.cli import run_stage


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory, embedded_model_dir):
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # two shared cores: one thread per process is several times faster
    run_dir = tmp_path_factory.mktemp("pipeline") / "run"
    checked, check = [], stages.check  # every stage block's checks, counted
    stages.check = lambda cfg: checked.append(cfg.stage.name) or check(cfg)
    try:
        summary = run_stage(compose_cfg(TINY_PIPELINE, run_dir=run_dir))
    finally:
        stages.check = check
    yield run_dir, summary, checked
    torch.set_num_threads(before)


def _manifest(run_dir, stage):
    return json.loads((run_dir / stage / "manifest.json").read_text())


def test_pipeline_validates_once_then_runs_every_stage_and_ends_with_the_eval_table(pipeline_run):
    run_dir, summary, checked = pipeline_run
    assert checked == ["pipeline", *ORDER]  # each stage block checked once in the run (it used to be twice)
    assert summary["status"] == "complete" and list(summary["stages"]) == ORDER
    assert all(s["status"] == "complete" for s in summary["stages"].values())
    for stage in ORDER:
        assert _manifest(run_dir, stage)["status"] == "complete", stage
    # each stage read its input by naming the stage before it
    assert _manifest(run_dir, "sft1")["inputs"]["dataset"] == str(run_dir / "cold_start" / "dataset.jsonl")
    assert _manifest(run_dir, "reasoning_rl")["inputs"]["model"] == str(run_dir / "sft1" / "model")
    assert _manifest(run_dir, "rejection_sampling")["inputs"]["model"] == str(run_dir / "reasoning_rl" / "model")
    assert _manifest(run_dir, "sft2")["inputs"]["dataset"] == str(run_dir / "rejection_sampling" / "dataset.jsonl")
    # the stage-specific reward mix stayed with its stage
    assert _manifest(run_dir, "reasoning_rl")["config"]["stage"]["name"] == "reasoning_rl"

    scores = summary["table"].split("\n\n")[1].splitlines()
    assert scores[0] == ("| model | greedy pass@1 strict | greedy pass@1 free | pass@1 (k=2) strict | "
                         "pass@1 (k=2) free | maj@2 strict | maj@2 free |")
    assert [line.split("|")[1].strip() for line in scores[2:]] == ["base", "r1_zero", "sft1", "reasoning_rl", "sft2"]
    metrics = _manifest(run_dir, "eval")["metrics"]
    assert all(0 <= m["small_sums"][k] <= 1 for m in metrics.values() for k in ("greedy/strict", "maj@k/free"))
    assert all(math.isfinite(m["small_sums"]["mean_length"]) for m in metrics.values())
    for name in ("results.csv", "stages.png", "curves.png"):
        assert (run_dir / "eval" / name).is_file(), name
    rs = _manifest(run_dir, "rejection_sampling")["metrics"]
    assert rs["filter"]["samples"] == 4 and rs["rows"] == rs["reasoning_rows"] + rs["non_reasoning_rows"]


def test_resume_skips_complete_stages_and_continues_an_interrupted_one(pipeline_run):
    run_dir, _, _ = pipeline_run
    table = (run_dir / "eval" / "results.md").read_text()
    for stage in ("sft2", "eval"):
        manifest = _manifest(run_dir, stage)
        manifest["status"] = "running"  # as if the process died during sft2, then eval
        (run_dir / stage / "manifest.json").write_text(json.dumps(manifest))
    summary = run_stage(compose_cfg([*TINY_PIPELINE, "run.resume=true"], run_dir=run_dir))
    assert {s: r["status"] for s, r in summary["stages"].items()} == {
        **{s: "skipped (complete)" for s in ORDER}, "sft2": "complete", "eval": "complete"}
    assert "resuming from" in (run_dir / "sft2" / "log.txt").read_text()
    assert _manifest(run_dir, "sft2")["status"] == "complete"
    # eval read back the batches of its first run for every model but sft2, whose weights were written again (by
    # the resumed sft2, from its last checkpoint: the same weights, so the same scores)
    generation = json.loads((run_dir / "eval" / "summary.json").read_text())["generation"]
    restored = {model: {p["per_process"][0]["restored_batches"] == p["per_process"][0]["batches"] > 0
                        for per_pass in benches.values() for p in per_pass.values()}
                for model, benches in generation.items()}
    assert restored == {"base": {True}, "r1_zero": {True}, "sft1": {True}, "reasoning_rl": {True}, "sft2": {False}}
    scores = (run_dir / "eval" / "results.md").read_text().split("\n\n")[:2]  # the caption and the scores table
    assert scores == table.split("\n\n")[:2]  # (the generation table after them has sft2's new tokens/s)


def test_infer_answers_with_the_final_model(pipeline_run, tmp_path):
    run_dir, _, _ = pipeline_run
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "What is 3 + 4?"}) + "\n")
    result = run_stage(compose_cfg(["model=tiny_random", "stage=infer", "stage.inputs.model=sft2",
                                    f"stage.prompts_file={prompts}", "stage.generation.max_new_tokens=4"],
                                   run_dir=run_dir))
    assert result["model"] == str(run_dir / "sft2" / "model")
    assert result["conversations"][0][-1]["role"] == "assistant"
