"""Held-out evaluation during GRPO training (TRL's eval loop, `stage.trainer.eval_strategy=steps`): the test prompts
are sampled and scored by the stage's rewards every eval_steps; metrics.jsonl, summary.json, samples.jsonl and the
log carry it; the training alerts and the step timer ignore it; bad settings fail before anything loads."""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import TINY, compose_cfg
from hub_copies import write_local_copy
from r1pipeline.callbacks import _prompt_text, format_eval_line
from r1pipeline.cli import run_stage
from r1pipeline.data import build_dataset
from r1pipeline.errors import ConfigError
from r1pipeline.monitor import TrainingAlerts
from r1pipeline.stages.grpo import eval_prompts

EVAL = ["stage.trainer.max_steps=4", "stage.trainer.eval_strategy=steps", "stage.trainer.eval_steps=2",
        "stage.eval_prompts=3", "tracking=none"]
MIX = {"format": 1.0, "correct": 1.0}  # conf/reward/r1_zero.yaml


def _rows(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def test_grpo_evaluates_held_out_prompts_every_eval_steps(tmp_path, embedded_model_dir):
    torch.set_num_threads(1)
    cfg = compose_cfg([*TINY, *EVAL], run_dir=tmp_path / "run")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = run_stage(cfg)
    # TRL's generation reads a property transformers deprecates: silenced, it used to print at every evaluation
    assert not [w for w in caught if "is_gradient_checkpointing" in str(w.message)]
    out = tmp_path / "run" / "r1_zero"
    rows = _rows(out / "metrics.jsonl")
    evals = [r for r in rows if "eval_reward" in r]
    assert [r["step"] for r in evals] == [0, 2, 4]  # eval_on_start (the default): the untrained model first
    assert [r["step"] for r in rows if "reward" in r] == [1, 2, 3, 4]  # training logs unchanged
    for r in evals:
        for name in MIX:
            assert math.isfinite(r[f"eval_rewards/{name}/mean"])
        # the held-out reward is the stage's weighted mix of its rewards
        assert r["eval_reward"] == pytest.approx(sum(w * r[f"eval_rewards/{n}/mean"] for n, w in MIX.items()))
        # 3 prompts x 1 completion (num_generations_eval, the default), scored; no training-only keys
        assert r["eval_completions/mean_length"] > 0 and not any(k in r for k in ("step_time", "reward"))
        assert not any(k.startswith(("system/", "alerts/")) for k in r)

    # summary.json: the eval curve's first and last, and where it was measured
    metrics = summary["metrics"]
    assert metrics["eval_at_steps"] == [0, 2, 4]
    assert metrics["eval_reward"]["first"] == evals[0]["eval_reward"]
    assert metrics["eval_reward"]["last"] == evals[-1]["eval_reward"]
    assert metrics["eval_rewards/correct/mean"]["last"] == evals[-1]["eval_rewards/correct/mean"]

    # samples.jsonl: the held-out samples are the first 3 test prompts (never training prompts), one each per eval
    data = build_dataset(cfg.dataset)
    test = [_prompt_text(p) for p in data["test"]["prompt"][:3]]
    train = {_prompt_text(p) for p in data["train"]["prompt"]}
    held_out = [s for s in _rows(out / "samples.jsonl") if s["split"] == "test"]
    assert sorted({s["step"] for s in held_out}) == [0, 2, 4]
    for step in (0, 2, 4):
        prompts = [s["prompt"] for s in held_out if s["step"] == step]
        assert sorted(prompts) == sorted(test)
    assert not set(test) & train
    assert set(held_out[0]["rewards"]) == set(MIX)

    log = (out / "log.txt").read_text()
    assert all(f"held-out eval at step {n}/4 | reward" in log for n in (0, 2, 4))
    # the stage's closing line: the held-out curve from its first to its last evaluation
    first, last = evals[0], evals[-1]
    assert (f"held-out (3 test prompts, steps 0 -> 4): reward {first['eval_reward']:.3f} -> {last['eval_reward']:.3f} | "
            f"correct {first['eval_rewards/correct/mean']:.2f} -> {last['eval_rewards/correct/mean']:.2f} | "
            f"format {first['eval_rewards/format/mean']:.2f} -> {last['eval_rewards/format/mean']:.2f}") in log
    # rewards.png gains a fifth panel, the held-out reward (each panel is 5 inches at 100 dpi)
    from PIL import Image

    assert Image.open(out / "rewards.png").size[0] == 5 * 500


def test_eval_off_needs_only_eval_strategy_no(tmp_path, embedded_model_dir):
    # r1_zero evaluates on start by default; eval_strategy=no alone must turn all of it off (it used to crash in
    # transformers: "evaluation requires an eval_dataset")
    torch.set_num_threads(1)
    run_stage(compose_cfg([*TINY, "stage.trainer.max_steps=1", "stage.trainer.eval_strategy=no", "tracking=none"],
                          run_dir=tmp_path / "run"))
    rows = _rows(tmp_path / "run" / "r1_zero" / "metrics.jsonl")
    assert [r["step"] for r in rows if "reward" in r] == [1]
    assert not any(k.startswith("eval_") for r in rows for k in r)


def test_eval_prompts_takes_at_most_the_held_out_split():
    # the default 32 on a dataset with 8 held-out rows evaluates those 8, in order; eval off: no eval split
    cfg = compose_cfg([*TINY, "stage.eval_prompts=32"])
    data = build_dataset(cfg.dataset)
    assert eval_prompts(cfg, data)["prompt"] == data["test"]["prompt"] and len(data["test"]) == 8
    assert eval_prompts(compose_cfg([*TINY, "stage.eval_prompts=3"]), data)["prompt"] == data["test"]["prompt"][:3]
    assert eval_prompts(compose_cfg([*TINY, "stage.trainer.eval_strategy=no"]), data) is None


def test_eval_line_reads_the_eval_keys():
    logs = {"eval_reward": 0.625, "eval_reward_std": 0.25, "eval_rewards/format/mean": 0.5,
            "eval_rewards/correct/mean": 0.375, "eval_completions/mean_length": 41.6, "eval_format_compliance": 0.5,
            "eval_runtime": 12.34, "epoch": 0.5}
    assert format_eval_line(logs, 50, 400) == ("held-out eval at step 50/400 | reward 0.625±0.25 | format 0.50 "
                                               "correct 0.38 | len 42 | format-ok 50% | 12.3 s")


def test_eval_logs_do_not_change_the_training_alerts():
    """A falling reward raises reward_collapse once, then stays flat; eval logs between the training logs (whose
    held-out reward is not the training reward) must neither raise nor re-raise anything."""
    alerts = OmegaConf.to_container(compose_cfg([]).alerts)
    state = type("State", (), {"is_world_process_zero": True, "global_step": 0})()
    rewards = [1.0, 1.0, 1.0, 0.2, 0.2, 0.2, 0.2, 0.2]

    def raised(with_eval: bool):
        monitor = TrainingAlerts(alerts, kind="grpo")
        for step, reward in enumerate(rewards, 1):
            state.global_step = step
            monitor.on_log(None, state, None, logs={"reward": reward, "frac_reward_zero_std": 0.0})
            if with_eval:
                logs = {"eval_reward": 0.0, "eval_frac_reward_zero_std": 1.0, "eval_runtime": 1.0}
                monitor.on_log(None, state, None, logs=logs)
                assert not any(k.startswith("alerts/") for k in logs)
        return [(a["step"], a["name"]) for a in monitor.raised()]

    assert raised(with_eval=False) == [(5, "reward_collapse"), (8, "reward_flat")]
    assert raised(with_eval=True) == raised(with_eval=False)


@pytest.mark.parametrize("extra, message", [
    # steps without a number of steps
    (["stage.trainer.eval_strategy=steps", "stage.trainer.eval_steps=null"],
     r"stage\.trainer\.eval_steps: eval_strategy=steps needs"),
    # no prompts to evaluate
    (["stage.eval_prompts=0"], r"stage\.eval_prompts: 0 must be an integer of at least 1"),
    # an eval batch of 8 completions cannot hold groups of 3
    (["stage.trainer.eval_strategy=steps", "stage.trainer.eval_steps=2", "stage.trainer.num_generations_eval=3"],
     r"stage\.trainer\.per_device_eval_batch_size: .* whole groups of num_generations_eval=3"),
])
def test_eval_config_errors_name_the_field(extra, message, tmp_path):
    cfg = compose_cfg([*TINY, *extra], run_dir=tmp_path / "run")
    with pytest.raises(ConfigError, match=message):
        run_stage(cfg)
    assert not (tmp_path / "run" / "r1_zero").exists()


def test_eval_on_a_dataset_without_its_test_split_fails_before_the_model(tmp_path):
    # GSM8K names its own test split; a copy that lacks it cannot give held-out prompts
    copy = write_local_copy(tmp_path / "gsm8k", "gsm8k")
    (copy / "test.jsonl").unlink()
    cfg = compose_cfg([*TINY, *EVAL, "dataset=gsm8k", f"dataset.path={copy}"], run_dir=tmp_path / "run")
    with pytest.raises(ConfigError, match=r"dataset\.path: could not load .* \(split 'test'\).*"
                                          r"dataset\.test_split=null"):
        run_stage(cfg)
    assert not (tmp_path / "run" / "r1_zero").exists()
