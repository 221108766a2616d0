"""Config composition for every option of every group, and bad input rejected with the right message."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

from conftest import CONF_DIR, TINY, compose_cfg
from r1pipeline.config import validate
from r1pipeline.errors import ConfigError
from r1pipeline.cli import run_stage
from r1pipeline.sweep import cpu_has_native_bf16

GROUPS = ["model", "dataset", "reward", "stage", "hardware", "rollout", "tracking", "experiment"]


def _options(group):
    return sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml"))


_NO_DEEPSPEED = None if importlib.util.find_spec("deepspeed") else r"needs DeepSpeed, which is not installed"
# What this offline, CPU-only machine refuses, option by option (the GPUs a profile needs are not asked for here:
# `devices=False`, as for a Slurm submission); every other option validates.
REFUSED = {
    **{("model", m): r"^model\.path: 'Qwen/.*' is not a local directory and HF_HUB_OFFLINE=1" for m in _options("model")
       if m.startswith("qwen")},
    ("dataset", "math_500"): r"^dataset\.split: null - dataset 'math_500' has no training split",  # a test set
    ("reward", "judge"): r"^reward\.judge: url: None is not an http\(s\) URL",  # no judge server configured
    ("rollout", "vllm"): r"^rollout=vllm: vLLM needs a CUDA GPU and hardware=cpu runs on CPU",
    # hardware=cpu autocasts to bf16 where the CPU has it natively, and the static KV cache is float32 there
    **({("rollout", "static"): r"^rollout\.engine: the static engine on CPU needs float32"}
       if cpu_has_native_bf16() else {}),
    **{("hardware", h): _NO_DEEPSPEED for h in ("1xgpu_offload", "2x4090", "8xh100", "2x8xh100")},
    # the reference presets name the seeds' Qwen models (tests/test_presets.py runs each on the tiny model)
    **{("experiment", e): r"^model\.path: 'Qwen/.*' is not a local directory and HF_HUB_OFFLINE=1"
       for e in ("r1_zero_tutorial", "r1_step_by_step", "r1_full", "grpo_gsm8k")},
    ("experiment", "mini_r1_countdown"): r"^(hardware=2x4090: needs DeepSpeed|model\.path: 'Qwen/)",
}


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in _options(g)])
def test_every_group_option_composes_and_validates(group, option, monkeypatch):
    for name in ("R1_JUDGE_URL", "R1_JUDGE_MODEL"):
        monkeypatch.delenv(name, raising=False)
    cfg = compose_cfg([f"{group}={option}"])
    assert cfg.stage.name and cfg.model.path and cfg.reward and cfg.hardware.name
    refused = REFUSED.get((group, option))
    if refused is None:
        validate(cfg, devices=False)
    else:
        with pytest.raises(ConfigError, match=refused):
            validate(cfg, devices=False)


def test_defaults_are_the_r1_zero_cpu_run():
    cfg = compose_cfg()
    assert (cfg.stage.name, cfg.model.name, cfg.dataset.name, cfg.hardware.name) == (
        "r1_zero", "smollm2_135m", "small_sums", "cpu")
    validate(cfg)


@pytest.mark.parametrize("stage,key", [("r1_zero", "stage"), ("reasoning_rl", "stage"), ("align", "stage"),
                                       ("pipeline", "stage.r1_zero"), ("pipeline", "stage.reasoning_rl")])
def test_cpu_sizes_live_with_the_cpu_profile_and_gpus_get_the_stage_groups_real_scale(stage, key):
    """The CPU main job's sizes (conf/shape/*_cpu.yaml) apply on the CPU profiles only: a GPU profile composes the
    stage group's R1-scale values, so nothing a GPU run builds on is CPU-sized."""
    from omegaconf import OmegaConf

    def trainer(hardware):
        return OmegaConf.select(compose_cfg([f"stage={stage}", f"hardware={hardware}"]), key).trainer

    for hardware in ("cpu", "cpu_accelerate", "cpu_zero3"):
        cpu = trainer(hardware)
        assert (cpu.num_generations, cpu.per_device_train_batch_size, cpu.beta) == (4, 16, 0.0), hardware
        assert cpu.max_completion_length == (48 if key.endswith("r1_zero") or stage == "r1_zero" else 128)
    for hardware in ("1xgpu", "2x4090", "8xh100"):
        gpu = trainer(hardware)
        assert (gpu.num_generations, gpu.max_completion_length, gpu.learning_rate, gpu.beta, gpu.temperature,
                gpu.loss_type) == (16, 1024, 3e-6, 0.001, 1.0, "grpo"), hardware


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
        # a generation batch (TRL's generation_batch_size) that does not hold whole groups, or not whole global batches
        (["stage.trainer.per_device_train_batch_size=4", "+stage.trainer.generation_batch_size=6"],
         r"generation_batch_size: 6 must be a multiple of the global batch \(4 per device x 1 processes = 4\); set it to 8"),
        (["stage.trainer.per_device_train_batch_size=6", "+stage.trainer.generation_batch_size=18"],
         r"per_device_train_batch_size: the generation batch \(generation_batch_size=18\) must be divisible by "
         r"num_generations=4"),
        (["+stage.trainer.generation_batch_size=32", "+stage.trainer.steps_per_generation=2"],
         r"generation_batch_size: set it or steps_per_generation, not both"),
        # no completions per device: before the model loads, not a torch error after it
        (["stage.trainer.per_device_train_batch_size=0"], r"^stage\.trainer\.per_device_train_batch_size: 0 must be"),
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
        # a key the stage does not have (an experiment file can add one; it would silently do nothing)
        (["+stage.init_from=sft1"], r"^stage\.init_from: not a field of this stage; did you mean inputs\.model\?"),
        (["stage=pipeline", "+stage.sft2.generation.top_k=5"], r"^stage\.sft2\.generation: not a field of this stage"),
        # values of the wrong type, in TRL's fields and in ours
        (["stage.trainer.lr_scheduler_type=cosin"], r"^stage\.trainer\.lr_scheduler_type: 'cosin' is not one of \["),
        (["stage=sft1", "stage.trainer.packing=maybe"], r"^stage\.trainer\.packing: 'maybe' is not true or false"),
        (["+reward.tag_count.weight=1", "+reward.tag_count.prefix=3"], r"^reward\.tag_count\.prefix: 3 is not true or false"),
        (["dataset.test_size=0"], r"^dataset\.test_size: 0 must be an integer of at least 1"),
        (["run.resume=yes"], r"^run\.resume: 'yes' must be true"),
    ],
)
def test_bad_config_is_rejected_with_the_field_and_fix(overrides, message):
    import torch

    if overrides == ["hardware=1xgpu"] and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match=message):
        validate(compose_cfg(overrides))


@pytest.mark.parametrize("per_device,generation_batch,accumulation", [
    (12, 24, 1),   # seed 002's L40S command for the 3B model: per-device 12, generation batch 24, groups of 8
    (16, 32, 1),   # its 0.5B command: per-device 16, generation batch 32
    (8, None, 2),  # its conservative command: gradient accumulation 2 (generation batch 8 x 1 x 2 = 16)
])
def test_batch_shapes_a_seed_ran_and_trl_accepts_validate(per_device, generation_batch, accumulation):
    """The batch check follows TRL's own rule: each shape a seed ran is accepted here and by trl.GRPOConfig."""
    from trl import GRPOConfig

    extra = [] if generation_batch is None else [f"+stage.trainer.generation_batch_size={generation_batch}"]
    cfg = compose_cfg(["stage.trainer.num_generations=8", f"stage.trainer.per_device_train_batch_size={per_device}",
                       f"stage.trainer.gradient_accumulation_steps={accumulation}", *extra])
    validate(cfg)  # one process here, as the seed's single L40S
    args = GRPOConfig(output_dir="unused", num_generations=8, per_device_train_batch_size=per_device,
                      gradient_accumulation_steps=accumulation, generation_batch_size=generation_batch,
                      use_cpu=True)
    assert args.generation_batch_size % 8 == 0


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


def test_the_stage_table_names_every_stage_config_its_module_and_the_pipeline_order():
    """One table of stages (r1pipeline/stages): a conf/stage file for each, a module with `run` and `check` for
    each, and stage=pipeline's default order is the table's training and data stages in the table's order."""
    from r1pipeline.stages import OPT_IN, STAGES, producers, running, stage_module

    assert set(STAGES) == set(_options("stage"))
    for name in STAGES:
        assert compose_cfg([f"stage={name}"]).stage.name == name
        module = stage_module(name)
        assert callable(module.run) and callable(module.check), name
    assert list(compose_cfg(["stage=pipeline"]).stage.order) == [n for n in STAGES
                                                                 if n not in ("infer", "pipeline", *OPT_IN)]
    assert set(OPT_IN) <= set(compose_cfg(["stage=pipeline"]).stage)  # each has its block, for stage.order to name
    assert producers("model") == ["r1_zero", "sft1", "reasoning_rl", "sft2", "align",
                                   "distill"] and running("grpo") == ["r1_zero",
                                                                                                     "reasoning_rl"]
