"""The side-by-side benchmark harness runs end to end (tiny model, CPU); its numbers are not asserted."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_compare_grpo_harness_writes_the_table(tmp_path, embedded_model_dir):
    from conftest import compose_cfg
    from r1pipeline.models import load_model, load_tokenizer

    cfg = compose_cfg(["model=tiny_random"])
    model_dir = tmp_path / "tiny"
    load_model(cfg.model, str(embedded_model_dir), True, random_init=True).save_pretrained(model_dir)
    load_tokenizer(str(embedded_model_dir)).save_pretrained(model_dir)
    out = tmp_path / "bench"
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "compare_grpo.py"), "--model-dir", str(model_dir),
                          "--steps", "2", "--batch", "8", "--max-len", "8", "--out", str(out), "--variants", "hf,static",
                          "dataset.train_size=32"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    table = (out / "table.md").read_text()
    assert "| reference (plain TRL) | r1pipeline rollout=hf | r1pipeline rollout=static |" in table
    for row in ("median_step_s", "rollout_tok_per_s", "peak_mem_gb", "generation_tok_per_s", "format per step"):
        assert row in table
    results = json.loads((out / "results.json").read_text())
    runs = {"reference": results["reference"], **results["project"]}
    assert list(runs) == ["reference", "hf", "static"]
    for run in runs.values():
        assert run["median_step_s"] > 0 and run["peak_mem_gb"] > 0
        assert len(run["reward_curves"]["format"]) == 2
    for run in results["project"].values():  # generation alone is faster than whole steps, and below the bound
        assert run["rollout_tok_per_s"] < run["generation_tok_per_s"] < run["bound_tok_per_s"]


def test_unknown_variant_is_refused_before_the_reference_runs(tmp_path):
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "compare_grpo.py"), "--variants", "hf,statik",
                          "--model-dir", str(tmp_path), "--out", str(tmp_path / "bench")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "--variants: statik not in conf/rollout/ (hf, static, vllm)" in res.stderr
    assert not (tmp_path / "bench" / "reference.log").exists()
