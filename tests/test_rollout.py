"""The `rollout` group: engines map onto TRL/transformers, the static engine keeps shapes fixed without changing what is
generated, every rollout is timed against the memory-bandwidth bound, and unusable engines are refused up front."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import compose_cfg

from r1pipeline import rollout
from r1pipeline.config import check_devices, validate
from r1pipeline.errors import ConfigError
from r1pipeline.rollout import copy_bandwidth, decode_bytes, grpo_rollout_args


def _tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2))


def test_decode_bytes_are_weights_per_step_plus_the_kv_cache_read():
    model = _tiny_llama()
    weights = sum(p.numel() for p in model.parameters()) * 4  # float32
    kv_per_position = 2 * 2 * 2 * 4 * 4  # K and V x 2 layers x 2 kv heads x head_dim 4 x 4 bytes = 128
    # batch 2, prompt 3, 4 steps: step t reads 2 x (3 + t) positions -> 2 x (3+4+5+6) = 36 positions
    assert decode_bytes(model, batch=2, prompt_len=3, steps=4) == 4 * weights + 36 * kv_per_position


def test_copy_bandwidth_is_measured_once_per_device():
    bw = copy_bandwidth("cpu")
    assert 1e8 < bw < 1e13  # between 100 MB/s and 10 TB/s: a real measurement, in bytes/s
    assert copy_bandwidth("cpu") == bw


def test_trls_generation_method_that_the_trainer_wraps_has_the_signature_it_was_written_for():
    """RolloutGRPOTrainer wraps TRL's private `_generate_single_turn`: a TRL that renames it or changes its arguments
    must fail here, loudly, not silently skip the wrapper (no timing, no prompt bucket) or pass arguments astray."""
    import inspect

    from trl import GRPOTrainer

    method = getattr(GRPOTrainer, "_generate_single_turn", None)
    assert method is not None, "TRL's GRPOTrainer has no _generate_single_turn any more: update r1pipeline/rollout.py"
    assert str(inspect.signature(method)) == rollout.TRL_GENERATE_SIGNATURE, (
        f"TRL's GRPOTrainer._generate_single_turn{inspect.signature(method)} differs from the signature "
        f"RolloutGRPOTrainer wraps, {rollout.TRL_GENERATE_SIGNATURE}: update r1pipeline/rollout.py")
    source = inspect.getsource(GRPOTrainer)  # the attributes the wrapper reads and sets are TRL's too
    assert "self.pad_to_multiple_of = args.pad_to_multiple_of" in source and "self._metrics[mode]" in source


def test_engines_map_onto_grpo_config_fields():
    from trl import GRPOConfig

    fields = set(GRPOConfig.__dataclass_fields__)
    assert grpo_rollout_args(compose_cfg().rollout) == {}
    static = grpo_rollout_args(compose_cfg(["rollout=static"]).rollout)
    assert static == {"cache_implementation": "static"}
    vllm = grpo_rollout_args(compose_cfg(["rollout=vllm"]).rollout)
    assert vllm == {"use_vllm": True, "vllm_mode": "colocate", "vllm_gpu_memory_utilization": 0.3}
    assert set(static) | set(vllm) <= fields


@pytest.mark.parametrize("overrides, message", [
    (["rollout=vllm"], "rollout=vllm: vLLM needs a CUDA GPU and hardware=cpu runs on CPU"),
    (["rollout=static", "rollout.prompt_bucket=0"], "rollout.prompt_bucket: 0 must be a positive number"),
    (["rollout=static", "rollout.prompt_bucket=null"], "rollout.prompt_bucket: the static engine needs a bucket"),
    (["rollout.engine=sglang"], "rollout.engine: 'sglang' is not an engine"),
    (["rollout=static", "hardware.bf16=true"], "rollout.engine: the static engine on CPU needs float32"),
])
def test_unusable_rollout_is_refused_before_anything_loads(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        validate(compose_cfg(overrides))


def test_vllm_engine_names_the_missing_gpu_or_package(monkeypatch):
    import importlib.util

    import torch

    cfg = compose_cfg(["rollout=vllm", "hardware.use_cpu=false"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"rollout=vllm: vLLM needs a CUDA GPU and none is visible"):
        check_devices(cfg)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    with pytest.raises(ConfigError, match=r"the vllm package is not installed; pip install 'r1pipeline\[vllm\]'"):
        rollout.check(cfg)


def test_static_engine_generates_the_same_text_in_fixed_shapes(embedded_model_dir):
    """Greedy decoding on the real model: bucketed prompts and a filled-up last batch change nothing in the output."""
    from r1pipeline.generation import Params, generate
    from r1pipeline.models import load_model, load_tokenizer

    cfg = compose_cfg(["rollout=static"])
    tok = load_tokenizer(str(embedded_model_dir))
    model = load_model(cfg.model, str(embedded_model_dir), True)
    shapes = []
    real_generate = model.generate

    def recording_generate(**kw):
        shapes.append(tuple(kw["input_ids"].shape))
        return real_generate(**kw)

    prompts = [[{"role": "user", "content": "What is 2 + 3?"}],
               [{"role": "user", "content": "Name a colour."}],
               [{"role": "user", "content": "Write the word 'hello' in capital letters, please."}]]
    greedy = Params(max_new_tokens=8, temperature=0, batch_size=2)
    ref = generate(model, tok, prompts, n=1, params=greedy)
    model.generate = recording_generate
    ours = generate(model, tok, prompts, n=1, params=greedy, rollout=cfg.rollout)
    assert ours.texts == ref.texts and ours.num_tokens == ref.num_tokens
    assert shapes == [(2, 64), (2, 64)]  # the last batch of one prompt is filled up to 2 rows; 64-token bucket
    assert ours.stats["engine"] == "static" and ours.stats["sequences"] == 3
    assert 0 < ours.stats["tokens_per_s"] < ours.stats["bound_tokens_per_s"]
    assert 0 < ours.stats["share_of_bound"] < 1


def test_grpo_with_static_engine_logs_rollout_speed_against_the_bound(tiny_cfg):
    from r1pipeline.cli import run_stage

    cfg = tiny_cfg("rollout=static", "hardware.bf16=false", "stage.trainer.max_steps=1", "tracking=none")
    summary = run_stage(cfg)
    out = Path(cfg.run.dir) / "r1_zero"
    saved = json.loads((out / "model" / "config.json").read_text())
    assert saved["num_hidden_layers"] == 2  # the tiny model trained and saved
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    step = next(r for r in rows if "reward" in r)
    for key in ("rollout/tokens_per_s", "rollout/bound_tokens_per_s", "rollout/time_s"):
        assert math.isfinite(step[key]) and step[key] > 0, key
    assert 0 < step["rollout/share_of_bound"] < 1
    assert summary["metrics"]["rollout/tokens_per_s"]["last"] == pytest.approx(step["rollout/tokens_per_s"])
    assert (out / "rewards.png").stat().st_size > 10_000  # four panels, the last one rollout speed vs the bound


def test_static_engine_compiles_and_buckets_trl_generation_only(tiny_cfg, tmp_path, embedded_model_dir):
    """TRL builds its GenerationConfig with disable_compile=True; the static engine needs the compiled decode step,
    and pads prompts to the bucket for generation while the training forward stays unpadded."""
    from r1pipeline.data import build_dataset
    from r1pipeline.stages.grpo import grpo_args
    from r1pipeline.models import load_model, load_tokenizer
    from r1pipeline.rollout import rollout_trainer_cls

    cfg = tiny_cfg("rollout=static", "hardware.bf16=false", "stage.trainer.eval_strategy=no")  # no eval_dataset here
    args = grpo_args(cfg, tmp_path, [1.0])
    assert args.cache_implementation == "static" and args.pad_to_multiple_of is None  # training forward unpadded
    path = str(embedded_model_dir)
    trainer = rollout_trainer_cls()(model=load_model(cfg.model, path, True, True),
                                    processing_class=load_tokenizer(path), reward_funcs=[lambda completions, **kw: [0.0] * len(completions)], args=args,
                                    train_dataset=build_dataset(cfg.dataset)["train"], rollout=cfg.rollout)
    assert trainer.generation_config.disable_compile is False
    assert trainer.generation_config.compile_config.mode == "reduce-overhead"
    assert trainer.generation_config.cache_implementation == "static"

    shapes, real_generate = [], trainer.model.generate
    trainer.model.generate = lambda **kw: shapes.append(tuple(kw["input_ids"].shape)) or real_generate(**kw)
    completions, _ = trainer._generate_single_turn([[1, 2, 3], list(range(5, 75))], None, {}, 1)
    assert shapes == [(2, 128)]  # 70 tokens -> the 128 bucket
    assert len(completions) == 2 and all(1 <= len(c) <= cfg.stage.trainer.max_completion_length for c in completions)
    assert trainer.pad_to_multiple_of is None
    assert trainer._metrics["train"]["rollout/tokens_per_s"][-1] > 0


def test_trls_prompt_rendering_that_the_trainer_replaces_has_the_signature_it_was_written_for():
    import inspect

    from trl import GRPOTrainer

    method = getattr(GRPOTrainer, "_tokenize_prompts", None)
    assert method is not None, "TRL's GRPOTrainer has no _tokenize_prompts any more: update r1pipeline/rollout.py"
    assert str(inspect.signature(method)) == rollout.TRL_TOKENIZE_SIGNATURE, (
        f"TRL's GRPOTrainer._tokenize_prompts{inspect.signature(method)} differs from the signature "
        f"RolloutGRPOTrainer overrides, {rollout.TRL_TOKENIZE_SIGNATURE}: update r1pipeline/rollout.py")


def test_grpo_rollouts_continue_the_assistant_prefill_instead_of_opening_a_new_turn(embedded_model_dir):
    """The prompt GRPO generates from must end in the prefill, exactly as SFT rows and evaluation render it; TRL 1.16
    alone closes the prefill as a finished turn and opens another (shown here, so a TRL that fixes it is noticed)."""
    from types import SimpleNamespace

    from transformers import AutoTokenizer
    from trl import GRPOTrainer

    tok = AutoTokenizer.from_pretrained(embedded_model_dir)
    task = [{"role": "system", "content": "Think, then answer."}, {"role": "user", "content": "Calculate 3 + 5 + 8."}]
    prompts = [[*task, {"role": "assistant", "content": "<think>"}], task]
    ours = rollout.prefilled_prompt_ids(tok, prompts)
    assert tok.decode(ours[0]).endswith("<|im_start|>assistant\n<think>")
    assert tok.decode(ours[1]).endswith("Calculate 3 + 5 + 8.<|im_end|>\n<|im_start|>assistant\n")
    # the SFT row for the same task starts with the same tokens (the response continues the prefill)
    sft = tok.apply_chat_template([*task, {"role": "assistant", "content": "<think>\n3 + 5 = 8."}], tokenize=True,
                                  return_dict=True)["input_ids"]
    assert sft[:len(ours[0])] == ours[0]
    assert rollout.prefilled_prompt_ids(tok, [task]) is None  # no prefill: TRL renders it
    trl_self = SimpleNamespace(_is_vlm=False, environment_factories=None, processing_class=tok, chat_template=None,
                               tools=None, chat_template_kwargs={})
    trl_ids, _, _ = GRPOTrainer._tokenize_prompts(trl_self, prompts[:1])
    trl_text = tok.decode(trl_ids[0])
    assert trl_text.endswith("<think><|im_end|>\n<|im_start|>assistant\n"), (
        f"TRL now renders an assistant prefill as {trl_text[-60:]!r}; if it continues the prefill, drop "
        "RolloutGRPOTrainer._tokenize_prompts (r1pipeline/rollout.py)")
