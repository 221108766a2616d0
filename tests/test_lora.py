"""LoRA: only the adapter trains; the stage hands on its base with the adapter merged in (a plain checkpoint the next
stage loads, LoRA or not), and 4-bit loading is refused where it cannot work."""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import compose_cfg, reload_in_fresh_process
from r1pipeline.config import validate
from r1pipeline.errors import ConfigError
from r1pipeline.models import load_model
from r1pipeline.rewards import register
from r1pipeline.cli import run_stage


# reasoning_rl from the r1_zero stage's model, one short step
TINY_RL = ["model=tiny_random", "stage=reasoning_rl", "stage.inputs.model=r1_zero", "dataset.train_size=8",
           "dataset.test_size=4", "stage.trainer.max_steps=1", "stage.trainer.per_device_train_batch_size=4",
           "stage.trainer.num_generations=4", "stage.trainer.max_completion_length=8"]


@register("test_lora_checksum")
class LoraChecksumReward:
    """Test-only reward: a checksum of the text in [0, 1), so every group of the random model has a learning signal."""

    def __call__(self, completions, **kwargs):
        texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
        return [zlib.crc32(t.encode()) % 1000 / 1000 for t in texts]


def test_lora_stage_trains_the_adapter_only_and_hands_a_merged_model_on(tiny_cfg):
    cfg = tiny_cfg("model.lora.enabled=true", "model.lora.r=4", "model.lora.alpha=8", "model.lora.dropout=0.0",
                   "+reward.test_lora_checksum.weight=1.0", "stage.trainer.learning_rate=5e-2", "tracking=none")
    summary = run_stage(cfg)
    run = Path(cfg.run.dir)
    adapter_dir, model_dir = run / "r1_zero" / "adapter", run / "r1_zero" / "model"
    assert summary["outputs"] == {"model": str(model_dir), "adapter": str(adapter_dir)}
    assert (adapter_dir / "adapter_config.json").is_file() and not (adapter_dir / "model.safetensors").exists()
    adapter = load_file(adapter_dir / "adapter_model.safetensors")
    lora_b = {k: v for k, v in adapter.items() if "lora_B" in k}
    assert lora_b and all(k.split(".lora_")[0].split(".")[-1] in
                          {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} for k in lora_b)
    # LoRA starts with B = 0; after two steps with a signal the adapter has moved
    assert any(v.abs().sum() > 0 for v in lora_b.values()), "no adapter weight changed"

    # The stage's model/ is a plain checkpoint, exactly base + (alpha / r) * B @ A: the base itself did not train.
    from transformers import AutoModelForCausalLM

    assert not (model_dir / "adapter_config.json").exists()
    base = dict(load_model(cfg.model, json.loads((run / "r1_zero" / "manifest.json").read_text())["inputs"]["model"],
                           True, random_init=True).named_parameters())
    merged = dict(AutoModelForCausalLM.from_pretrained(model_dir).named_parameters())
    assert merged.keys() == base.keys()
    scale = 8 / 4
    for name, weight in merged.items():
        key = "base_model.model." + name.removesuffix(".weight")
        if f"{key}.lora_A.weight" in adapter:
            delta = scale * adapter[f"{key}.lora_B.weight"] @ adapter[f"{key}.lora_A.weight"]
            torch.testing.assert_close(weight, base[name] + delta, rtol=1e-5, atol=1e-6)
        else:  # embeddings, norms: untouched
            assert torch.equal(weight, base[name]), name
    loaded = reload_in_fresh_process(model_dir)  # no peft, no r1pipeline
    assert loaded == {"params": sum(w.numel() for w in base.values()), "empty": [], "new_tokens": loaded["new_tokens"]}
    assert loaded["new_tokens"] >= 1

    # The next stages take it as it is: a LoRA stage on top of it, and eval of both.
    rl = run_stage(compose_cfg([*TINY_RL, "model.lora.enabled=true", "model.lora.r=4", "tracking=none"], run_dir=run))
    assert rl["inputs"]["model"] == str(model_dir) and (run / "reasoning_rl" / "model" / "config.json").is_file()
    ev = run_stage(compose_cfg(["model=tiny_random", "stage=eval", "stage.inputs.models=[r1_zero,reasoning_rl]",
                                "stage.num_prompts=2", "stage.k=1", "stage.generation.max_new_tokens=4",
                                "dataset.train_size=8", "dataset.test_size=4", "tracking=none"], run_dir=run))
    assert ev["inputs"]["models"] == {"r1_zero": str(model_dir), "reasoning_rl": str(run / "reasoning_rl" / "model")}
    assert all(m["small_sums"]["mean_length"] >= 1 for m in ev["metrics"].values())



@pytest.mark.parametrize(
    "overrides,message",
    [
        # 4-bit weights train only through adapters
        (["model.load_in_4bit=true"], r"model.load_in_4bit: a 4-bit model trains only through adapters"),
        # bitsandbytes needs CUDA: a clear error on this CPU profile
        (["model.load_in_4bit=true", "model.lora.enabled=true"], r"model.load_in_4bit: bitsandbytes 4-bit loading needs a CUDA GPU"),
    ],
)
def test_4bit_loading_is_refused_where_it_cannot_work(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(compose_cfg(overrides))
