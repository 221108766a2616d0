"""End to end: a 2-step GRPO run on a tiny random model writes every artifact, and the model reloads and generates."""
from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import reload_in_fresh_process

from r1pipeline.rewards import register
from r1pipeline.cli import run_stage


@register("test_length")
class LengthReward:
    """Test-only reward that varies with the completion's character count, so a random model gets a learning signal
    (random tokens vary in length; any saturating length reward would give every completion the same score)."""

    def __call__(self, completions, **kwargs):
        return [(len(c[0]["content"] if isinstance(c, list) else c) % 5) / 4 for c in completions]


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_r1_zero_writes_every_artifact_and_learns(tiny_cfg):
    cfg = tiny_cfg("+reward.test_length.weight=1.0", "stage.trainer.learning_rate=1e-2")
    summary = run_stage(cfg)
    out = cfg.run.dir + "/r1_zero"
    from pathlib import Path

    out = Path(out)
    for name in ("config.yaml", "log.txt", "metrics.jsonl", "samples.jsonl", "summary.json", "manifest.json",
                 "rewards.png", "model/config.json", "model/model.safetensors", "model/tokenizer.json"):
        assert (out / name).is_file(), name
    assert summary["status"] == "complete" and summary["steps"] == 2
    assert isinstance(summary["alerts"], list) and summary["system"]["peak_rss_gb"] > 0

    metrics = [r for r in _rows(out / "metrics.jsonl") if "reward" in r]
    assert [r["step"] for r in metrics] == [1, 2]
    for row in metrics:
        for key in ("reward", "rewards/format/mean", "rewards/correct/mean", "rewards/test_length/mean",
                    "completions/mean_length", "step_time", "rewards/format/errors", "system/cpu_percent",
                    "system/rss_gb", "system/samples_per_s"):
            assert key in row and math.isfinite(row[key]), key
        assert 0.0 <= row["rewards/format/mean"] <= 1.0

    samples = [s for s in _rows(out / "samples.jsonl") if s["split"] == "train"]
    assert samples and {s["step"] for s in samples} == {1, 2}
    assert set(samples[0]["rewards"]) == {"format", "correct", "test_length"}
    assert "Calculate" in samples[0]["prompt"] and isinstance(samples[0]["completion"], str)  # small_sums, the default
    # the default held-out evaluation: before training, half way (step 1 of 2) and at the end
    assert summary["metrics"]["eval_at_steps"] == [0, 1, 2]

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["outputs"]["model"] == str(out / "model")
    # the reward audit ran before training and is on record: nothing in this mix pays for a hack
    audit = manifest["metrics"]["reward_audit"]
    assert audit == summary["metrics"]["reward_audit"] and audit["rows"] == 4 and audit["paid"] == []
    log = (out / "log.txt").read_text()
    assert "step 2/2 | reward" in log

    # The saved model differs from a fresh init (training moved it) and loads + generates in a fresh process.
    from r1pipeline.models import load_model

    fresh = load_model(cfg.model, str(out / "model"), True, random_init=True)
    from transformers import AutoModelForCausalLM

    trained = AutoModelForCausalLM.from_pretrained(out / "model")
    changed = [n for (n, p), (_, q) in zip(trained.named_parameters(), fresh.named_parameters()) if not torch.equal(p, q)]
    assert changed, "no parameter changed after two GRPO steps"
    reloaded = reload_in_fresh_process(out / "model")
    assert reloaded["new_tokens"] >= 1 and reloaded["empty"] == []


def test_rerun_into_same_dir_is_refused_then_resume_continues(tiny_cfg):
    from r1pipeline.errors import ConfigError

    cfg = tiny_cfg()
    run_stage(cfg)
    with pytest.raises(ConfigError, match="run.resume=true"):
        run_stage(cfg)
    more = tiny_cfg("run.resume=true", "stage.trainer.max_steps=3")
    summary = run_stage(more)
    assert summary["steps"] == 3
    from pathlib import Path

    log = (Path(more.run.dir) / "r1_zero" / "log.txt").read_text()
    assert "resuming from" in log and "checkpoint-2" in log
    # only step 3 was trained again: the metrics file holds steps 1, 2 (first run) and 3 (resumed), once each
    rows = _rows(Path(more.run.dir) / "r1_zero" / "metrics.jsonl")
    assert [r["step"] for r in rows if "reward" in r] == [1, 2, 3]
    # held-out evaluations of the first run (0, 1, 2) kept once: the resumed run does not evaluate "on start" again
    # (that would be a second row at step 2), and evaluates at its last step, 3, as transformers does at any end
    assert [r["step"] for r in rows if "eval_reward" in r] == [0, 1, 2, 3]
