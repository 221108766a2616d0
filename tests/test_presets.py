"""Every experiment preset runs: one step of each of its stages on CPU with the tiny random model, the preset file
used as shipped and its shapes kept: the per-device batches, gradient accumulation, group sizes, KL coefficient,
LoRA and learning rates of its seed's run (tests/test_preset_seeds.py holds them with the lengths) run here as they
are. What is overridden is only what a CPU cannot hold or a random model cannot do: the tiny model for the seeds'
Qwen models, `hardware=cpu` for their GPUs, local copies of their hub data (tests/hub_copies.py, in the hub schema),
one step per training stage, 32-token completions (a random model never stops early), short generations in the
stages that sample for data or scores, and every sample kept where a stage keeps only verified ones. What each test
checks is what a user of the preset would: the stages of its recipe ran with the preset's own choices (reward mix,
LoRA, dataset, order) and handed a model on that reloads."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import compose_cfg, reload_in_fresh_process
from hub_copies import write_local_copy, write_stratos_copy
from r1pipeline.cli import run_stage

CONF = Path(__file__).resolve().parent.parent / "conf" / "experiment"
PRESETS = ["r1_zero_tutorial", "r1_step_by_step", "r1_full", "grpo_gsm8k", "mini_r1_countdown"]
# Overrides every preset gets: the tiny model on the CPU, no tracker files.
COMMON = ["model=tiny_random", "hardware=cpu", "tracking=none"]


def one_step(prefix: str, completions: bool = False) -> list[str]:
    """One optimizer step of a training stage at the preset's own batch shape (per-device batch, accumulation, group
    size: TRL checks them as it builds the trainer); a GRPO stage's completions cut to 32 tokens, since the random
    model never stops early and the length adds minutes, not coverage (tests/test_preset_seeds.py holds the real
    lengths)."""
    return [f"{prefix}trainer.max_steps=1", *([f"{prefix}trainer.max_completion_length=32"] if completions else [])]


def generating(prefix: str) -> list[str]:
    """Two prompts, short generations, and every sample kept (min_score 0): the random model never solves a task,
    and the presets built on the R1 template have no prefill that a format credit could reward."""
    return [f"{prefix}num_prompts=2", f"{prefix}samples_per_prompt=2", f"{prefix}generation.max_new_tokens=8",
            f"{prefix}generation.batch_size=4"]


def held_out(prefix: str) -> list[str]:
    """Two held-out prompts for a GRPO stage's evaluation during training (transformers also evaluates at the last
    step): its completions keep the preset's group size and length."""
    return [f"{prefix}eval_prompts=2"]


def evaluating(prefix: str) -> list[str]:
    return [f"{prefix}num_prompts=2", f"{prefix}k=1", f"{prefix}generation.max_new_tokens=8"]


def overrides(name: str, tmp_path) -> list[str]:
    """The preset's own command on CPU, one step per training stage, with local copies of its hub data."""
    local = lambda dataset: f"dataset.path={write_local_copy(tmp_path / dataset, dataset)}"  # noqa: E731
    stratos = ["stage.cold_start.load.source=local",
               f"stage.cold_start.load.path={write_stratos_copy(tmp_path / 'stratos.jsonl')}"]
    grpo = lambda prefix: one_step(prefix, completions=True)  # noqa: E731
    if name == "r1_zero_tutorial":
        return [local("numina_math_tir"), *grpo("stage."), *held_out("stage.")]
    if name == "grpo_gsm8k":  # its held-out eval during training, at the one step: 2 prompts x 4 completions
        return [local("gsm8k"), *grpo("stage.r1_zero."), "stage.r1_zero.trainer.eval_steps=1",
                "stage.r1_zero.eval_prompts=2", *evaluating("stage.eval.")]
    if name == "mini_r1_countdown":
        return [local("countdown_tasks_3to4"), *grpo("stage.r1_zero."), *evaluating("stage.eval.")]
    if name == "r1_step_by_step":
        return [local("numina_math_tir"), *grpo("stage.r1_zero."), *stratos, *one_step("stage.sft1."),
                *evaluating("stage.eval.")]
    if name == "r1_full":
        return [local("numina_math_tir"), *grpo("stage.r1_zero."), *held_out("stage.r1_zero."), *stratos,
                *one_step("stage.sft1."), *grpo("stage.reasoning_rl."), *held_out("stage.reasoning_rl."),
                *generating("stage.rejection_sampling."), "stage.rejection_sampling.filters.min_score=0",
                "stage.rejection_sampling.filters.mixed_language=false", *one_step("stage.sft2."),
                "stage.reward_model.preferences.source=builtin", "stage.reward_model.preferences.size=8",
                *one_step("stage.reward_model."), *grpo("stage.align."), *held_out("stage.align."),
                "stage.align.general.size=2", *generating("stage.distill."), "stage.distill.min_score=0",
                *one_step("stage.distill."), "model@stage.distill.student=tiny_random", *evaluating("stage.eval.")]
    raise KeyError(name)


def run_preset(name: str, tmp_path) -> tuple[dict, Path]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_dir = tmp_path / "run"
        return run_stage(compose_cfg([f"experiment={name}", *COMMON, *overrides(name, tmp_path)], run_dir)), run_dir
    finally:
        torch.set_num_threads(before)


def manifest(run_dir: Path, stage: str) -> dict:
    return json.loads((run_dir / stage / "manifest.json").read_text())


def test_every_preset_has_a_test_and_a_header_with_its_command_and_seed():
    shipped = sorted(p.stem for p in CONF.glob("*.yaml"))
    assert set(PRESETS) <= set(shipped)
    for name in PRESETS:
        head = (CONF / f"{name}.yaml").read_text().splitlines()
        assert head[0] == "# @package _global_", name
        assert head[1].startswith(f"# python -m r1pipeline experiment={name}") and "meant for" in head[1], name
        assert any("seeds/00" in line for line in head if line.startswith("#")), name


@pytest.mark.parametrize("name", ["r1_zero_tutorial", "grpo_gsm8k", "mini_r1_countdown"])
def test_single_rl_presets_run_one_step(name, tmp_path, embedded_model_dir):
    summary, run_dir = run_preset(name, tmp_path)
    grpo_manifest = manifest(run_dir, "r1_zero")
    assert grpo_manifest["status"] == "complete"
    rewards = set(json.loads((run_dir / "r1_zero" / "summary.json").read_text())["reward_errors"])  # the built mix
    expected = {"r1_zero_tutorial": {"accuracy", "format", "reasoning_steps", "cosine", "repetition_penalty"},
                "grpo_gsm8k": {"format", "correct"},
                "mini_r1_countdown": {"format", "countdown"}}[name]
    assert rewards == expected, rewards
    if name == "mini_r1_countdown":  # LoRA: the adapter beside the merged model
        assert Path(grpo_manifest["outputs"]["adapter"], "adapter_config.json").is_file()
    if name != "r1_zero_tutorial":  # its eval scored base and the trained model on held-out prompts
        assert set(manifest(run_dir, "eval")["metrics"]) == {"base", "r1_zero"}
    if name == "grpo_gsm8k":  # and r1_zero scored held-out prompts as it trained
        assert grpo_manifest["metrics"]["eval_at_steps"] == [0, 1]  # before training and at its one step
        assert "eval_rewards/correct/mean" in grpo_manifest["metrics"]
    assert reload_in_fresh_process(grpo_manifest["outputs"]["model"])["new_tokens"] > 0


def test_step_by_step_preset_runs_grpo_sft_on_stratos_and_eval(tmp_path, embedded_model_dir):
    summary, run_dir = run_preset("r1_step_by_step", tmp_path)
    assert summary["order"] == ["r1_zero", "cold_start", "sft1", "eval"]
    assert {s: r["status"] for s, r in summary["stages"].items()} == dict.fromkeys(summary["order"], "complete")
    assert manifest(run_dir, "cold_start")["metrics"]["per_method"] == {"load": {"loaded": 2, "kept": 2}}
    assert manifest(run_dir, "sft1")["inputs"]["dataset"].endswith("cold_start/dataset.jsonl")
    assert set(manifest(run_dir, "eval")["metrics"]) == {"base", "r1_zero", "sft1"}


@pytest.mark.slow
def test_full_r1_preset_runs_every_stage(tmp_path, embedded_model_dir):
    summary, run_dir = run_preset("r1_full", tmp_path)
    assert {s: r["status"] for s, r in summary["stages"].items()} == dict.fromkeys(summary["order"], "complete")
    assert set(manifest(run_dir, "eval")["metrics"]) == {"base", "r1_zero", "sft1", "reasoning_rl", "sft2", "align",
                                                          "distill"}  # the teacher (align) and its student side by side
    assert manifest(run_dir, "align")["inputs"]["reward_model"] == str(run_dir / "reward_model" / "model")
    assert manifest(run_dir, "distill")["inputs"]["teacher"] == str(run_dir / "align" / "model")
