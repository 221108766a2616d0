"""LoRA on GRPO: only the adapter trains; merge_lora folds it into the base and the result loads and generates."""
from __future__ import annotations

import json
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import compose_cfg
from r1pipeline.config import validate
from r1pipeline.errors import ConfigError
from r1pipeline.models import load_model
from r1pipeline.rewards import register
from r1pipeline.stages import run_stage


@register("test_lora_checksum")
class LoraChecksumReward:
    """Test-only reward: a checksum of the text in [0, 1), so every group of the random model has a learning signal."""

    def __call__(self, completions, **kwargs):
        texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
        return [zlib.crc32(t.encode()) % 1000 / 1000 for t in texts]


def test_lora_grpo_trains_the_adapter_only_and_merges_into_a_deployable_model(tiny_cfg):
    cfg = tiny_cfg("model.lora.enabled=true", "model.lora.r=4", "model.lora.alpha=8", "model.lora.dropout=0.0",
                   "+reward.test_lora_checksum.weight=1.0", "stage.trainer.learning_rate=5e-2", "tracking=none")
    run_stage(cfg)
    run = Path(cfg.run.dir)
    adapter_dir = run / "r1_zero" / "model"
    assert (adapter_dir / "adapter_config.json").is_file() and not (adapter_dir / "model.safetensors").exists()
    adapter = load_file(adapter_dir / "adapter_model.safetensors")
    lora_b = {k: v for k, v in adapter.items() if "lora_B" in k}
    assert lora_b and all(k.split(".lora_")[0].split(".")[-1] in
                          {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} for k in lora_b)
    # LoRA starts with B = 0; after two steps with a signal the adapter has moved
    assert any(v.abs().sum() > 0 for v in lora_b.values()), "no adapter weight changed"

    merge_cfg = compose_cfg(["stage=merge_lora", "stage.init_from=r1_zero", "tracking=none"], run_dir=run)
    summary = run_stage(merge_cfg)
    merged_dir = Path(summary["outputs"]["model"])
    assert merged_dir == run / "merge_lora" / "model" and not (merged_dir / "adapter_config.json").exists()

    # The merged weights are exactly base + (alpha / r) * B @ A: the base itself did not train.
    from transformers import AutoModelForCausalLM

    base = dict(load_model(cfg.model, json.loads((run / "r1_zero" / "manifest.json").read_text())["inputs"]["model"],
                           True, random_init=True).named_parameters())
    merged = dict(AutoModelForCausalLM.from_pretrained(merged_dir).named_parameters())
    assert merged.keys() == base.keys()
    scale = 8 / 4
    for name, weight in merged.items():
        key = "base_model.model." + name.removesuffix(".weight")
        if f"{key}.lora_A.weight" in adapter:
            delta = scale * adapter[f"{key}.lora_B.weight"] @ adapter[f"{key}.lora_A.weight"]
            torch.testing.assert_close(weight, base[name] + delta, rtol=1e-5, atol=1e-6)
        else:  # embeddings, norms: untouched
            assert torch.equal(weight, base[name]), name

    code = ("import sys; from transformers import AutoModelForCausalLM, AutoTokenizer; "
            "p=sys.argv[1]; t=AutoTokenizer.from_pretrained(p); m=AutoModelForCausalLM.from_pretrained(p); "
            "ids=t('Hello', return_tensors='pt'); o=m.generate(**ids, max_new_tokens=5, do_sample=False); "
            "print(o.shape[1] - ids['input_ids'].shape[1])")
    res = subprocess.run([sys.executable, "-c", code, str(merged_dir)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert int(res.stdout.strip().splitlines()[-1]) >= 1


def test_merge_needs_an_adapter_stage(tmp_path):
    run = tmp_path / "run"
    (run / "r1_zero" / "model").mkdir(parents=True)
    (run / "r1_zero" / "model" / "config.json").write_text("{}")
    (run / "r1_zero" / "manifest.json").write_text(json.dumps(
        {"status": "complete", "outputs": {"model": str(run / "r1_zero" / "model")}}))
    cfg = compose_cfg(["stage=merge_lora", "stage.init_from=r1_zero"], run_dir=run)
    with pytest.raises(ConfigError, match=r"stage.init_from: .* holds a full model, not a LoRA adapter"):
        run_stage(cfg)
    with pytest.raises(ConfigError, match=r"stage.init_from: stage 'r1_zero' has no complete output|run stage"):
        run_stage(compose_cfg(["stage=merge_lora", "stage.init_from=r1_zero"], run_dir=tmp_path / "empty"))
    with pytest.raises(ConfigError, match=r"merge_lora needs the stage that trained the adapter"):
        run_stage(compose_cfg(["stage=merge_lora", "stage.init_from=base"], run_dir=run))


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
