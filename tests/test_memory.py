"""The "will it fit?" estimate (r1pipeline/memory/): each part moves the way the setting it models says, the ZeRO
parts are DeepSpeed's own estimators, the warning names the fields to change, every preset estimates on every GPU
profile, and (slow) the estimate holds against a measured CPU peak of a real GRPO step on the tiny model."""
from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import compose_cfg

from r1pipeline import memory
from r1pipeline.memory.estimate import GB

ROOT = Path(__file__).resolve().parent.parent
# Qwen2.5-1.5B, GRPO then eval (no hub needed: the shape is in its YAML), with the sizes these tests reason about
# pinned over the preset's: 16 completions of (256 assumed + 48) tokens a micro-batch, no KL term.
QWEN_1_5B = ["experiment=grpo_gsm8k", "dataset.max_prompt_tokens=null",
             "stage.r1_zero.trainer.per_device_train_batch_size=16", "stage.r1_zero.trainer.num_generations=4",
             "stage.r1_zero.trainer.gradient_accumulation_steps=1", "stage.r1_zero.trainer.max_completion_length=48",
             "stage.r1_zero.trainer.beta=0"]


def parts(est, stage: int = 0) -> dict[str, float]:
    return {p.name: p.gb for p in est.stages[stage].parts}


def part(est, prefix: str, stage: int = 0) -> float:
    (gb,) = [gb for name, gb in parts(est, stage).items() if name.startswith(prefix)]
    return gb


def est(*overrides, **kw):
    return memory.estimate(compose_cfg(list(overrides)), **kw)


# ---------------------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("model,published", [
    # the parameter counts on each Qwen model card (two decimals: 7,615,616,512 is printed 7.61B there), from the
    # config.json fields copied into conf/model/
    ("qwen2.5_0.5b_instruct", 0.49e9), ("qwen2.5_1.5b", 1.54e9), ("qwen2.5_3b_instruct", 3.09e9),
    ("qwen2.5_7b_instruct", 7.61e9),
])
def test_hub_model_shapes_match_their_published_parameter_counts(model, published):
    from r1pipeline.shapes import shape

    s = shape(compose_cfg([f"model={model}"]).model)
    assert abs(s.params - published) < 0.01e9 and s.source.startswith("model.architecture")


def test_the_tiny_models_shape_is_the_real_models(embedded_model_dir):
    """Counted on the meta device = counted on the model that loads; the largest layer is DeepSpeed's own
    model_to_params on the real model; the LoRA count is peft's on the real model."""
    from deepspeed.runtime.zero.stage3 import model_to_params
    from peft import get_peft_model

    from r1pipeline.models import load_model, peft_config
    from r1pipeline.shapes import shape

    cfg = compose_cfg(["model=tiny_random", "model.lora.enabled=true"])
    s = shape(cfg.model)
    model = load_model(cfg.model, str(embedded_model_dir), True, random_init=True)
    assert (s.params, s.largest_layer) == model_to_params(model) == (model.num_parameters(), 49152 * 32)
    assert s.lora_params == get_peft_model(model, peft_config(cfg.model)).get_nb_trainable_parameters()[0] > 0


# ---------------------------------------------------------------------------------------------- parts
def test_zero3_is_deepspeeds_estimator_and_divides_over_the_gpus():
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs

    from r1pipeline.shapes import shape

    s = shape(compose_cfg(QWEN_1_5B).model)
    for gpus, machines, hw in ((8, 1, "8xh100"), (16, 2, "2x8xh100")):
        e = est(*QWEN_1_5B, f"hardware={hw}")
        host, gpu, _ = estimate_zero3_model_states_mem_needs(s.params, s.largest_layer, gpus // machines, machines,
                                                             cpu_offload=False, cpu_offload_params=False)
        assert part(e, "model states, DeepSpeed ZeRO-3") == pytest.approx(gpu / GB)
        assert e.stages[0].host_gb == pytest.approx(host / GB)
    eight, sixteen = (part(est(*QWEN_1_5B, f"hardware={h}"), "model states") for h in ("8xh100", "2x8xh100"))
    # 18 bytes per parameter over the GPUs, plus the largest layer gathered whole (4 bytes per parameter)
    assert eight - sixteen == pytest.approx(18 * s.params * (1 / 8 - 1 / 16) / GB, rel=1e-3)


def test_the_estimator_is_what_is_called(monkeypatch):
    import deepspeed.runtime.zero.stage3 as stage3

    calls = []
    monkeypatch.setattr(stage3, "estimate_zero3_model_states_mem_needs",
                        lambda **kw: calls.append(kw) or (3 * GB, 5 * GB, 0))
    e = est(*QWEN_1_5B, "hardware=2x4090")
    assert part(e, "model states") == 5 and e.stages[0].host_gb == 3
    assert calls[0] | {"total_params": None, "largest_layer_params": None} == {
        "total_params": None, "largest_layer_params": None, "num_gpus_per_node": 2, "num_nodes": 1,
        "cpu_offload": True, "cpu_offload_params": True, "zero_init": True}


def test_offload_moves_model_states_to_the_host():
    on_gpu = est(*QWEN_1_5B, "hardware=8xh100")
    offloaded = est(*QWEN_1_5B, "hardware=8xh100", "hardware.accelerate_config=launch/accelerate/zero3_offload.yaml")
    from r1pipeline.shapes import shape

    s = shape(compose_cfg(QWEN_1_5B).model)
    # with params and optimizer offloaded the GPU keeps the largest layer only (DeepSpeed: 4 bytes per parameter)
    assert part(offloaded, "model states") == pytest.approx(4 * s.largest_layer / GB)
    assert part(offloaded, "model states") < part(on_gpu, "model states") / 3
    assert offloaded.stages[0].host_gb > on_gpu.stages[0].host_gb


def test_plain_gpu_counts_bf16_weights_gradients_and_adamw_moments():
    from r1pipeline.shapes import shape

    p = shape(compose_cfg(QWEN_1_5B).model).params
    e = parts(est(*QWEN_1_5B, "hardware=1xgpu"))
    assert (e["weights"], e["gradients"], e["AdamW states (2 moments)"]) == pytest.approx((2 * p / GB, 2 * p / GB,
                                                                                          4 * p / GB))
    # several processes without DeepSpeed: DDP's gradient buckets on top
    assert "DDP gradient buckets" in parts(est(*QWEN_1_5B, "hardware=1xgpu", "hardware.num_processes=2"))


def test_lora_trains_only_the_adapter():
    full = parts(est(*QWEN_1_5B, "hardware=1xgpu"))
    lora = est(*QWEN_1_5B, "hardware=1xgpu", "model.lora.enabled=true")
    from r1pipeline.shapes import shape

    adapter = shape(compose_cfg([*QWEN_1_5B, "model.lora.enabled=true"]).model).lora_params
    assert part(lora, "LoRA adapter") == pytest.approx(16 * adapter / GB)  # fp32 weights, gradients, AdamW
    assert part(lora, "frozen base weights") == pytest.approx(full["weights"])
    assert "gradients" not in parts(lora) and part(lora, "LoRA adapter") < full["AdamW states (2 moments)"] / 10
    # the LoRA model's LM head is frozen: no fp32 head gradient
    assert part(lora, "LM head") < full["LM head (TRL chunked log-probs)"]
    # QLoRA: the decoder's linear layers at ~4.1 bits, the embedding still bf16
    qlora = est(*QWEN_1_5B, "hardware=1xgpu", "model.lora.enabled=true", "model.load_in_4bit=true")
    s = shape(compose_cfg(QWEN_1_5B).model)
    expected = (2 * (s.params - s.linear_params) + s.linear_params * 4.127 / 8) / GB
    assert part(qlora, "frozen base weights (4-bit)") == pytest.approx(expected)
    assert part(qlora, "frozen base weights (4-bit)") < part(lora, "frozen base weights") / 2


def test_a_positive_beta_adds_a_reference_model_sharded_under_zero3_and_none_with_lora():
    from r1pipeline.shapes import shape

    p = shape(compose_cfg(QWEN_1_5B).model).params
    beta = "stage.r1_zero.trainer.beta=0.04"
    assert not any(n.startswith("reference") for n in parts(est(*QWEN_1_5B, "hardware=1xgpu")))
    assert part(est(*QWEN_1_5B, "hardware=1xgpu", beta), "reference") == pytest.approx(2 * p / GB)
    assert part(est(*QWEN_1_5B, "hardware=8xh100", beta), "reference") == pytest.approx(2 * p / 8 / GB)
    lora = est(*QWEN_1_5B, "hardware=1xgpu", beta, "model.lora.enabled=true")  # TRL disables the adapter instead
    assert not any(n.startswith("reference") for n in parts(lora))


def test_gradient_checkpointing_shrinks_activations_and_longer_completions_grow_them():
    plain = part(est(*QWEN_1_5B, "hardware=1xgpu"), "activations")
    ckpt = part(est(*QWEN_1_5B, "hardware=1xgpu", "hardware.gradient_checkpointing=true"), "activations")
    longer = part(est(*QWEN_1_5B, "hardware=1xgpu", "stage.r1_zero.trainer.max_completion_length=480"), "activations")
    assert ckpt < plain / 5
    assert longer == pytest.approx(plain * (256 + 480) / (256 + 48))  # tokens per row: prompt + completion
    assert part(est(*QWEN_1_5B, "hardware=1xgpu", "stage.r1_zero.trainer.per_device_train_batch_size=8"),
                "activations") == pytest.approx(plain / 2)


def test_vllm_reserves_its_share_instead_of_a_kv_cache():
    hf = est(*QWEN_1_5B, "hardware=1xgpu")
    vllm = est(*QWEN_1_5B, "hardware=1xgpu", "rollout=vllm")
    assert part(vllm, "vLLM") == pytest.approx(0.3 * 80)
    assert any(n.startswith("KV cache") for n in parts(hf)) and not any(n.startswith("KV cache") for n in parts(vllm))
    assert vllm.peak.total > hf.peak.total


def test_zero3_gathers_the_whole_model_for_generation():
    from r1pipeline.shapes import shape

    p = shape(compose_cfg(QWEN_1_5B).model).params
    assert part(est(*QWEN_1_5B, "hardware=8xh100"), "whole model gathered") == pytest.approx(2 * p / GB)
    no_gather = est(*QWEN_1_5B, "hardware=8xh100", "++stage.r1_zero.trainer.ds3_gather_for_generation=false")
    assert not any(n.startswith("whole model") for n in parts(no_gather))


def test_total_is_the_rest_plus_the_larger_phase():
    s = est(*QWEN_1_5B, "hardware=1xgpu").stages[0]
    always = sum(p.gb for p in s.parts if p.phase == "always")
    assert s.total == pytest.approx(always + max(s.phase("training"), s.phase("rollout")))
    assert s.phase("training") > s.phase("rollout") > 0


def test_a_pipeline_estimates_each_stage_in_order_and_its_peak():
    cfg = compose_cfg(["experiment=r1_full", "hardware=8xh100"])
    e = memory.estimate(cfg)
    # every stage of the order; distill twice: its teacher's generation, then its student's SFT
    order = [n for name in cfg.stage.order
             for n in ([f"{name} (teacher)", f"{name} (student)"] if name == "distill" else [name])]
    assert [s.stage for s in e.stages] == order and "distill (student)" in order
    assert e.peak.total == max(s.total for s in e.stages)
    sft1 = cfg.stage.sft1.trainer
    assert e.stages[order.index("sft1")].what == (f"SFT, micro-batch of {sft1.per_device_train_batch_size} rows x "
                                                  f"{sft1.max_length} tokens")


def test_the_prompt_length_is_stated_when_assumed():
    assumed = est(*QWEN_1_5B, "hardware=1xgpu")
    assert assumed.prompt_assumed and assumed.prompt_tokens == 256
    bounded = est(*QWEN_1_5B, "hardware=1xgpu", "dataset.max_prompt_tokens=300")
    assert bounded.prompt_tokens == 300 and not bounded.prompt_assumed
    assert "(assumed: dataset.max_prompt_tokens is unset)" in memory.format_estimate(assumed)


# ---------------------------------------------------------------------------------------------- report
def test_over_budget_warns_once_naming_the_fields(caplog):
    cfg = compose_cfg([*QWEN_1_5B, "hardware=1xgpu", "hardware.gpu_memory_gb=16"])
    with caplog.at_level(logging.INFO, logger="r1pipeline.memory"):
        result = memory.report(cfg)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert not result.fits and len(warnings) == 1
    for field in ("stage.r1_zero.trainer.per_device_train_batch_size", "stage.r1_zero.trainer.max_completion_length",
                  "hardware.gradient_checkpointing=true", "model.lora.enabled=true", "hardware=1xgpu_offload"):
        assert field in warnings[0]
    assert "hardware.gpu_memory_gb=16" in warnings[0]
    assert "peak: r1_zero" in caplog.records[0].getMessage()  # the table came first


def test_several_gpus_over_budget_are_pointed_at_the_offload_config(caplog):
    cfg = compose_cfg([*QWEN_1_5B, "hardware=8xh100", "hardware.gpu_memory_gb=3"])
    with caplog.at_level(logging.WARNING, logger="r1pipeline.memory"):
        memory.report(cfg)
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "hardware.accelerate_config=launch/accelerate/zero3_offload.yaml" in warning
    assert "hardware=1xgpu_offload" not in warning and "hardware.gradient_checkpointing=true" not in warning


def test_within_budget_logs_the_table_and_no_warning(caplog):
    with caplog.at_level(logging.INFO, logger="r1pipeline.memory"):
        result = memory.report(compose_cfg(["experiment=mini_r1_countdown"]))
    assert result.fits and not [r for r in caplog.records if r.levelno >= logging.WARNING]
    table = caplog.records[0].getMessage()
    assert "per GPU, hardware=2x4090 (24 GB)" in table and "fits" in table and "host RAM" in table


def test_cpu_profiles_get_no_report_and_a_bad_budget_only_a_warning(caplog):
    assert memory.report(compose_cfg(["experiment=smoke"])) is None
    with caplog.at_level(logging.INFO, logger="r1pipeline.memory"):
        assert memory.report(compose_cfg([*QWEN_1_5B, "hardware=1xgpu", "hardware.gpu_memory_gb=lots"])) is None
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and "hardware.gpu_memory_gb: 'lots' must be" in record.getMessage()


def test_the_cli_reports_right_after_validation(monkeypatch):
    from r1pipeline import cli

    calls = []
    monkeypatch.setattr(cli, "validate", lambda cfg, **kw: calls.append("validate"))
    monkeypatch.setattr(cli.memory, "report", lambda cfg: calls.append("report"))
    monkeypatch.setattr(cli, "dispatch", lambda cfg: calls.append("dispatch") or {})
    cli.run_stage(compose_cfg(["experiment=smoke"]))
    assert calls == ["validate", "report", "dispatch"]


def test_the_command_prints_the_estimate_without_running_anything(capsys, tmp_path):
    from r1pipeline.memory.__main__ import main

    assert main(["experiment=mini_r1_countdown", "hardware=2x4090", f"run.dir={tmp_path / 'run'}"]) == 0
    out = capsys.readouterr().out
    assert "r1_zero: GRPO, micro-batch of 1 completions x (256 + 1024) tokens" in out and "fits" in out
    assert not (tmp_path / "run").exists()
    assert main([*QWEN_1_5B, "hardware=1xgpu", "hardware.gpu_memory_gb=8"]) == 1  # over: exit 1 and the advice
    assert "model.lora.enabled=true" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------- every preset
def test_every_preset_estimates_on_every_gpu_profile():
    from r1pipeline.composing import options
    from r1pipeline.memory.reporting import gpu_profiles

    profiles = gpu_profiles()
    assert profiles == ["1xgpu", "1xgpu_offload", "2x4090", "2x8xh100", "8xh100"]
    for preset in options("experiment"):
        for hw in profiles:
            e = est(f"experiment={preset}", f"hardware={hw}")
            assert e.stages and all(math.isfinite(s.total) and s.total > 0 for s in e.stages), (preset, hw)


def test_the_table_has_every_preset_and_replaces_the_readme_section(tmp_path, monkeypatch):
    from r1pipeline.composing import options
    from r1pipeline.memory import reporting as report

    monkeypatch.setattr(report, "TABLE_FILE", tmp_path / "memory_table.md")
    readme = tmp_path / "README.md"
    readme.write_text("before\n<!-- memory-table:start -->\nold\n<!-- memory-table:end -->\nafter\n")
    report.write_table(readme)
    text = readme.read_text()
    assert text.startswith("before\n<!-- memory-table:start -->\n| preset (model) | 1xgpu (80 GB) |")
    assert "old" not in text and text.endswith("<!-- memory-table:end -->\nafter\n")
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert [r.split("`")[1] for r in rows] == options("experiment")
    assert report.table() in (tmp_path / "memory_table.md").read_text()


def test_trl_chunk_sizes_the_lm_head_part_reads_are_still_there():
    """Tripwire: the LM-head part reads TRL 1.16's tile sizes; a TRL upgrade that moves them fails here."""
    from trl.kernels.chunked_logprob import TOKEN_CHUNK_SIZE
    from trl.trainer.utils import _CHUNKED_LOGPROB_CHUNK_SIZE

    assert (TOKEN_CHUNK_SIZE, _CHUNKED_LOGPROB_CHUNK_SIZE) == (4096, 32768)


# ---------------------------------------------------------------------------------------------- against a measurement
@pytest.mark.slow
def test_the_tiny_models_estimate_holds_against_a_measured_cpu_peak(embedded_model_dir):
    """Two real GRPO steps of the tiny model (bench/memory_calibration.py, ~30 s): the estimated training working set
    is within the calibration's stated error (bench/results/memory_calibration.md: 0.94-1.12 over 12 settings, the
    tiny model at 1.09-1.12), with room for allocator noise, of the measured one, and so is the whole peak."""
    res = subprocess.run([sys.executable, str(ROOT / "bench/memory_calibration.py"), "--one", "tiny_b4_c16"],
                         capture_output=True, text=True, timeout=600, cwd=ROOT,
                         env={**__import__("os").environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    record = json.loads(res.stdout.strip().splitlines()[-1])
    assert record["completion_mean_length"] == [16.0, 16.0]  # the lengths the estimate assumes
    assert 0.9 <= record["ratio_train"] <= 1.25 and 0.9 <= record["ratio_peak"] <= 1.25


def test_a_fit_within_20_percent_of_the_gpu_is_called_tight():
    from r1pipeline.memory.reporting import verdict

    need = est(*QWEN_1_5B, "hardware=1xgpu").peak.total
    for budget, word in ((need / 0.9, "fits, tight (over 80% of it)"), (need / 0.7, "fits"),
                         (need * 0.9, "does NOT fit")):
        assert verdict(est(*QWEN_1_5B, "hardware=1xgpu", f"hardware.gpu_memory_gb={budget}")) == word
