"""stage=align: GRPO over reasoning and general prompts, each row scored only by the rewards of its kind: the
rule-based mix on reasoning rows, the reward model from stage=reward_model (or the judge) on general rows."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import compose_cfg
from r1pipeline.cli import run_stage
from r1pipeline.config import validate
from r1pipeline.errors import ConfigError
from r1pipeline.stages.align import ForKind

TINY_RM = ["model=tiny_random", "stage=reward_model", "stage.preferences.size=8", "stage.trainer.max_steps=2",
           "tracking=none"]
TINY_ALIGN = ["model=tiny_random", "stage=align", "stage.inputs.model=base", "dataset.train_size=4",
              "dataset.test_size=4", "stage.general.size=4", "stage.trainer.max_steps=2",
              "stage.trainer.per_device_train_batch_size=4", "stage.trainer.num_generations=2",
              "stage.trainer.max_completion_length=8", "run.samples_per_log=4", "tracking=none"]


def echo_length(completions, **columns):
    return [float(len(c)) for c in completions]


@pytest.mark.parametrize("kind, rows, expected", [
    # a reasoning reward scores reasoning rows only
    ("reasoning", ["reasoning", "general", "reasoning"], [1.0, None, 3.0]),
    # a general reward scores general rows only
    ("general", ["reasoning", "general", "general"], [None, 2.0, 3.0]),
    # no row of its kind: nothing scored, the reward is not even called
    ("general", ["reasoning", "reasoning", "reasoning"], [None, None, None]),
])
def test_a_reward_scores_only_rows_of_its_kind(kind, rows, expected):
    calls = []
    reward = ForKind(lambda completions, **c: calls.append(c) or echo_length(completions), kind)
    assert reward(["a", "bb", "ccc"], prompts=["p1", "p2", "p3"], kind=rows, answer=["1", "2", "3"]) == expected
    if calls:  # every per-row column reaches the reward cut to its rows
        assert calls[0]["answer"] == [a for a, k in zip(["1", "2", "3"], rows) if k == kind]


@pytest.mark.parametrize("rm_lora", [False, True])  # the reward model trained whole, or LoRA merged into model/
def test_align_scores_reasoning_rows_by_rules_and_general_rows_by_the_reward_model(rm_lora, tmp_path,
                                                                                    embedded_model_dir):
    torch.set_num_threads(1)
    run_dir = tmp_path / "run"
    rm = run_stage(compose_cfg([*TINY_RM, f"model.lora.enabled={str(rm_lora).lower()}"], run_dir=run_dir))
    # with held-out evaluation at step 2: the dataset's test prompts, reasoning rows scored by the rules only
    summary = run_stage(compose_cfg([*TINY_ALIGN, "stage.trainer.eval_strategy=steps", "stage.trainer.eval_steps=2",
                                     "stage.eval_prompts=2"], run_dir=run_dir))
    assert summary["inputs"]["reward_model"] == rm["outputs"]["reward_model"]
    assert summary["metrics"]["eval_at_steps"] == [0, 2]  # before training (eval_on_start, the default) and at 2
    held_out = [json.loads(line) for line in (run_dir / "align" / "metrics.jsonl").read_text().splitlines()
                if "eval_reward" in line][0]
    assert held_out["eval_rewards/format/mean"] is not None and held_out["eval_rewards/reward_model/mean"] is None
    assert summary["metrics"]["prompts_by_kind"] == {"reasoning": 4, "general": 4}
    assert summary["steps"] == 2
    rules = {"correct", "format", "language_consistency"}
    assert set(summary["reward_errors"]) == rules | {"reward_model"}
    samples = [s for line in (run_dir / "align" / "samples.jsonl").read_text().splitlines()
               if (s := json.loads(line))["split"] == "train"]
    seen = set()
    for s in samples:
        general = "Calculate" not in s["prompt"]  # the reasoning rows (small_sums) ask to calculate a sum
        seen.add(general)
        scored = {name for name, score in s["rewards"].items() if score is not None}
        assert scored == ({"reward_model"} if general else rules & scored) and scored, s
        if not general:
            assert s["rewards"]["reward_model"] is None and s["rewards"]["format"] is not None
    assert seen == {True, False}  # both kinds were sampled and scored
    assert (run_dir / "align" / "model" / "config.json").is_file()


@pytest.mark.parametrize("overrides, message", [
    # the reward model's stage has not run in this run directory
    ([], r"stage\.inputs\.reward_model: stage 'reward_model' has no complete output.*run stage reward_model first"),
    # one reward in both mixes would score both kinds under one name
    (["+stage.general_rewards.format.weight=1"], r"stage\.general_rewards: \['format'\] also in stage\.rewards"),
    # a reward model mix without a scorer
    (["stage.inputs.reward_model=null"], r"stage\.inputs\.reward_model: the general mix has reward_model"),
    # not a stage that makes a reward model
    (["stage.inputs.reward_model=sft1"], r"stage\.inputs\.reward_model: 'sft1' is not a stage that produces a "
                                         r"reward_model \(reward_model\)"),
])
def test_align_config_errors_name_the_field(overrides, message, tmp_path, embedded_model_dir):
    cfg = compose_cfg([*TINY_ALIGN, *overrides], run_dir=tmp_path / "run")
    with pytest.raises(ConfigError, match=message):
        validate(cfg)
        run_stage(cfg)


def test_align_with_the_judge_for_general_prompts_validates(tmp_path, monkeypatch):
    monkeypatch.setenv("R1_JUDGE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("R1_JUDGE_MODEL", "judge")
    validate(compose_cfg([*TINY_ALIGN, "~stage.general_rewards.reward_model", "+stage.general_rewards.judge.weight=1",
                          "stage.inputs.reward_model=null"], run_dir=tmp_path / "run"))
