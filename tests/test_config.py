"""Config composition for every option of every group, and bad input rejected with the right message."""
from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

from conftest import CONF_DIR, TINY, compose_cfg
from r1pipeline.config import validate
from r1pipeline.errors import ConfigError
from r1pipeline.stages import run_stage

GROUPS = ["model", "dataset", "reward", "stage", "hardware", "rollout", "tracking", "experiment"]


def _options(group):
    return sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in _options(g)])
def test_every_group_option_composes(group, option):
    cfg = compose_cfg([f"{group}={option}"])
    assert cfg.stage.name and cfg.model.path and cfg.reward and cfg.hardware.name
    if group not in ("experiment",):
        assert cfg[group] is not None


def test_defaults_are_the_r1_zero_cpu_run():
    cfg = compose_cfg()
    assert (cfg.stage.name, cfg.model.name, cfg.dataset.name, cfg.hardware.name) == (
        "r1_zero", "smollm2_135m", "countdown", "cpu")
    validate(cfg)


@pytest.mark.parametrize(
    "overrides,message",
    [
        # an unknown reward lists the valid ones
        (["+reward.acuracy.weight=1"], r"reward\.acuracy: unknown reward.*valid rewards: .*countdown"),
        # a reward parameter that does not exist
        (["+reward.format.strictness=2"], r"reward\.format\.strictness: unknown parameter"),
        # generation batch not divisible by the group size
        (["stage.trainer.per_device_train_batch_size=6", "stage.trainer.num_generations=4"],
         r"per_device_train_batch_size: .*divisible by num_generations=4"),
        # a group of one gives no advantage
        (["stage.trainer.num_generations=1", "stage.trainer.per_device_train_batch_size=1"],
         r"num_generations: 1 is too small"),
        # a typo in a trainer field, with a suggestion
        (["+stage.trainer.learning_rat=1e-5"], r"stage\.trainer\.learning_rat: not a field of trl\.GRPOConfig; did you mean learning_rate"),
        # a local model path that does not exist
        (["model.path=/nonexistent/model"], r"model\.path: local path /nonexistent/model does not exist"),
        # a hub id with the hub offline and nothing cached
        (["model.path=someorg/some-model"], r"HF_HUB_OFFLINE=1.*not in the hub cache"),
        # a GPU profile on a machine without one
        (["hardware=1xgpu"], r"hardware=1xgpu: needs a CUDA GPU"),
    ],
)
def test_bad_config_is_rejected_with_the_field_and_fix(overrides, message):
    import torch

    if overrides == ["hardware=1xgpu"] and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match=message):
        validate(compose_cfg(overrides))


def test_unknown_group_option_and_unknown_key_fail_at_composition():
    with pytest.raises(ConfigCompositionException, match="reward"):
        compose_cfg(["reward=does_not_exist"])
    with pytest.raises((ConfigCompositionException, ConfigAttributeError, ConfigKeyError)):
        compose_cfg(["stage.no_such_key=1"])


def test_missing_dataset_column_is_reported_before_the_model_loads(tmp_path):
    # A Countdown-style file without `target`: the prompt template needs it.
    (tmp_path / "data").mkdir()
    data = tmp_path / "data" / "cd.jsonl"
    data.write_text("\n".join('{"nums": [1, 2, 3], "goal": 6}' for _ in range(10)))
    cfg = compose_cfg([*TINY, "dataset=countdown_tasks_3to4", f"dataset.path={tmp_path / 'data'}", "dataset.columns={nums: nums}"],
                      run_dir=tmp_path / "run")
    with pytest.raises(ConfigError, match=r"dataset.columns: .* has no column\(s\) \['target'\]"):
        run_stage(cfg)
    assert not (tmp_path / "run" / "r1_zero").exists(), "a failed validation must not leave a run directory"


@pytest.mark.parametrize("stage", ["r1_zero", "reasoning_rl"])
def test_grpo_stages_keep_r1s_kl_term_whatever_trls_default(tmp_path, stage):
    """TRL 1.16 turned use_bias_correction_kl on by default, which changes the KL gradient when beta > 0; the GRPO
    stages state R1's term (no importance weight), so a run with a KL coefficient trains as R1 describes."""
    from r1pipeline.stages.grpo import grpo_args

    cfg = compose_cfg([f"stage={stage}", "stage.trainer.beta=0.04"], run_dir=tmp_path / "run")
    args = grpo_args(cfg, tmp_path / "run" / stage, [1.0])
    assert args.beta == 0.04 and args.use_bias_correction_kl is False
