"""How completions are sampled (the `rollout` config group), and how fast that is against the memory-bandwidth bound.

Engines (conf/rollout/*.yaml):
- hf: `model.generate` with the dynamic KV cache (TRL's default path).
- static: a static KV cache; on GPU transformers then compiles the decode step itself. Prompts are left-padded up to a
  multiple of `prompt_bucket` for generation only (TRL's `pad_to_multiple_of`, set around the generate call so the
  training forward is not padded too) and batches keep one size, so the compiled graph is reused. TRL 1.16 builds its
  GenerationConfig with `disable_compile=True`; `RolloutGRPOTrainer` turns compilation back on for this engine.
- vllm: TRL's vLLM colocate mode for GRPO; the generating stages use vLLM's offline engine (r1pipeline/vllm_engine.py).

Every GRPO rollout is timed: `rollout/tokens_per_s` (completion tokens / generation wall time) is logged beside
`rollout/bound_tokens_per_s`, the rate at which the device could merely read the weights and KV cache that this
decode had to read (`decode_bytes`), from a measured copy bandwidth. Their ratio says how far from the hardware's
limit the rollout runs.
"""
from __future__ import annotations

import functools
import logging
import time

import torch

from r1pipeline.errors import ConfigError

log = logging.getLogger(__name__)
ENGINES = ("hf", "static", "vllm")


def check(cfg) -> None:
    """The `rollout` group: a known engine, a positive prompt bucket, and vLLM only where it can run (installed, on a
    GPU profile; whether this machine has the GPU: config.check_devices)."""
    import importlib.util

    r = cfg.rollout
    if r.engine not in ENGINES:
        raise ConfigError(f"rollout.engine: {r.engine!r} is not an engine; choose one of {list(ENGINES)}")
    bucket = r.get("prompt_bucket")
    if bucket is not None and (not isinstance(bucket, int) or isinstance(bucket, bool) or bucket < 1):
        raise ConfigError(f"rollout.prompt_bucket: {bucket!r} must be a positive number of tokens (e.g. 64) or null")
    if r.engine == "static" and bucket is None:
        raise ConfigError("rollout.prompt_bucket: the static engine needs a bucket (e.g. 64) so that compiled shapes "
                          "repeat; set rollout.prompt_bucket=64 or use rollout=hf")
    if r.engine == "static" and cfg.hardware.use_cpu and cfg.hardware.bf16:
        raise ConfigError("rollout.engine: the static engine on CPU needs float32 (its KV cache is allocated in the "
                          "model's float32 while bf16 autocast writes bfloat16 into it); add hardware.bf16=false")
    if r.engine != "vllm":
        return
    if cfg.hardware.use_cpu:
        raise ConfigError(f"rollout=vllm: vLLM needs a CUDA GPU and hardware={cfg.hardware.name} runs on CPU; "
                          f"use rollout=hf or rollout=static there")
    if importlib.util.find_spec("vllm") is None:
        raise ConfigError("rollout=vllm: the vllm package is not installed; pip install 'r1pipeline[vllm]' "
                          "(the vLLM version TRL 1.16 supports beside transformers 5.23), or use rollout=static")


def grpo_rollout_args(rollout) -> dict:
    """trl.GRPOConfig fields an engine sets (stage.trainer may still override any of them)."""
    if rollout.engine == "static":
        return {"cache_implementation": "static"}  # prompt bucketing: RolloutGRPOTrainer._generate_single_turn
    if rollout.engine == "vllm":
        return {"use_vllm": True, "vllm_mode": "colocate",
                "vllm_gpu_memory_utilization": rollout.gpu_memory_utilization}
    return {}


def compile_config(rollout):
    """transformers.CompileConfig for the static engine's decode step (transformers applies it on GPU only)."""
    from transformers import CompileConfig

    c = rollout.get("compile") or {}
    return CompileConfig(mode=c.get("mode", "reduce-overhead"), backend=c.get("backend", "inductor"),
                         fullgraph=c.get("fullgraph", False))


def static_generate_kwargs(rollout) -> dict:
    """Extra `model.generate` arguments of the static engine in the generating stages."""
    return {"cache_implementation": "static", "compile_config": compile_config(rollout)}


# ---------------------------------------------------------------------------------------------- bandwidth bound
@functools.lru_cache(maxsize=None)
def copy_bandwidth(device: str) -> float:
    """Measured device memory bandwidth in bytes/s: a 128 MiB tensor copied 5 times (read + write per copy)."""
    dev = torch.device(device)
    a = torch.empty(32 * 2**20, dtype=torch.float32, device=dev)
    b = torch.empty_like(a)
    b.copy_(a)  # warm-up (allocation, first touch)
    _sync(dev)
    t0 = time.perf_counter()
    for _ in range(5):
        b.copy_(a)
    _sync(dev)
    return 2 * a.nbytes * 5 / (time.perf_counter() - t0)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def decode_bytes(model, batch: int, prompt_len: int, steps: int) -> float:
    """Bytes a decode must read at least: all weights once per step, plus the KV cache of every row so far.

    Step t (0-based) reads batch x (prompt_len + t) cached positions of K and V in every layer.
    """
    cfg = model.config
    # ds_numel: under DeepSpeed ZeRO-3 a parameter's local numel() is only its shard
    weight_bytes = sum(getattr(p, "ds_numel", p.numel()) * p.element_size() for p in model.parameters())
    elem = next(model.parameters()).element_size()
    heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    kv_per_position = 2 * cfg.num_hidden_layers * heads * head_dim * elem
    positions = batch * (steps * prompt_len + steps * (steps - 1) / 2)
    return steps * weight_bytes + positions * kv_per_position


def bound_seconds(model, batch: int, prompt_len: int, steps: int) -> float:
    """The shortest time this device could take for a decode: its `decode_bytes` at the measured copy bandwidth."""
    device = next(model.parameters()).device
    return decode_bytes(model, batch, prompt_len, steps) / copy_bandwidth(str(device))


def rollout_stats(model, batch: int, prompt_len: int, steps: int, new_tokens: int, wall_s: float) -> dict:
    """tokens/s of a decode beside the bandwidth bound for the same tokens (and the share of the bound reached)."""
    bound_s = bound_seconds(model, batch, prompt_len, steps)
    rate = new_tokens / wall_s if wall_s else 0.0
    bound = new_tokens / bound_s if bound_s else 0.0
    return {"tokens_per_s": rate, "bound_tokens_per_s": bound, "share_of_bound": rate / bound if bound else 0.0}


# ---------------------------------------------------------------------------------------------- GRPO trainer
# The TRL methods the GRPO trainer overrides: TRL's private `GRPOTrainer._generate_single_turn`, the call that
# generates a rollout's completions (whatever the engine), wrapped to time it and, under the static engine, to pad
# prompts to the bucket for that call only. Its signature as of TRL 1.16; tests/test_rollout.py fails when TRL's
# differs, since a private method may change without notice.
TRL_GENERATE_SIGNATURE = "(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False)"
# And the one that renders prompts: TRL 1.16's `GRPOTrainer._tokenize_prompts` applies the chat template with
# `add_generation_prompt=True` to every conversational prompt, so a prompt ending in an assistant prefill ("<think>")
# becomes a closed assistant turn followed by a new, empty one: the model never continues the prefill, while the
# rewards, evaluation and SFT all read the prefill as the start of the response (a model SFT-trained on
# "<think>\n..." then writes "<think>" a second time, and the format check fails every completion). Such prompts are
# rendered with `continue_final_message=True` instead, as TRL's own `maybe_apply_chat_template` does.
TRL_TOKENIZE_SIGNATURE = "(self, prompts: list)"


def chat_prompt_ids(tokenizer, prompt: list[dict], chat_template=None, **template_kwargs) -> list[int]:
    """Token ids of one conversational prompt as the model sees it: an assistant prefill left open to continue, else
    the generation prompt (dataset.max_prompt_tokens counts these)."""
    prefill = prompt[-1]["role"] == "assistant"
    return tokenizer.apply_chat_template(prompt, chat_template=chat_template, tokenize=True, return_dict=True,
                                         continue_final_message=prefill, add_generation_prompt=not prefill,
                                         **template_kwargs)["input_ids"]


def prefilled_prompt_ids(tokenizer, prompts: list, chat_template=None, **template_kwargs) -> list[list[int]] | None:
    """Token ids of conversational prompts, an assistant prefill left open for the model to continue (the others get
    the generation prompt, as in TRL); None when no prompt has a prefill: TRL's own rendering is right for those."""
    if not any(isinstance(p, list) and p and p[-1].get("role") == "assistant" for p in prompts):
        return None
    return [chat_prompt_ids(tokenizer, p, chat_template, **template_kwargs) for p in prompts]


def record_rollout(trainer, prompt_ids, completion_ids, wall: float, bucket: int | None) -> None:
    """Log one timed rollout into TRL's metrics (averaged per logging step like its own): `rollout/time_s` and the
    `rollout_stats` beside the bandwidth bound."""
    lengths = [len(c) for c in completion_ids]
    if not lengths or wall <= 0:
        return
    prompt_len = max(len(p) for p in prompt_ids)
    if bucket:
        prompt_len = -(-prompt_len // bucket) * bucket
    stats = rollout_stats(trainer.model, len(lengths), prompt_len, max(lengths), sum(lengths), wall)
    metrics = trainer._metrics["train" if trainer.model.training else "eval"]
    metrics["rollout/time_s"].append(wall)
    for key, value in stats.items():
        metrics[f"rollout/{key}"].append(value)


def rollout_trainer_cls():
    """TRL's GRPOTrainer with the rollout engine applied and every rollout timed (imported lazily: TRL is heavy)."""
    from trl import GRPOTrainer

    class RolloutGRPOTrainer(GRPOTrainer):
        def __init__(self, *args, rollout=None, **kwargs):
            super().__init__(*args, **kwargs)
            static = rollout is not None and rollout.engine == "static" and not self.use_vllm
            self.prompt_bucket = rollout.prompt_bucket if static else None  # generation-time prompt padding
            if static:
                # TRL passes disable_compile=True; a static cache only pays off with the compiled decode step.
                self.generation_config.disable_compile = False
                self.generation_config.compile_config = compile_config(rollout)

        def _tokenize_prompts(self, prompts):  # TRL_TOKENIZE_SIGNATURE
            ids = None
            if not self._is_vlm and self.environment_factories is None and not self.tools:
                ids = prefilled_prompt_ids(self.processing_class, prompts, self.chat_template,
                                           **self.chat_template_kwargs)
            return (ids, None, {}) if ids is not None else super()._tokenize_prompts(prompts)

        def _generate_single_turn(self, prompt_ids, *args, **kwargs):  # TRL_GENERATE_SIGNATURE
            unpadded = self.pad_to_multiple_of
            if self.prompt_bucket:  # for generation only; the training forward keeps TRL's padding
                self.pad_to_multiple_of = self.prompt_bucket
            _sync(self.accelerator.device)
            t0 = time.perf_counter()
            try:
                completion_ids, logprobs = super()._generate_single_turn(prompt_ids, *args, **kwargs)
            finally:
                self.pad_to_multiple_of = unpadded
            _sync(self.accelerator.device)
            record_rollout(self, prompt_ids, completion_ids, time.perf_counter() - t0, self.prompt_bucket or unpadded)
            return completion_ids, logprobs

    return RolloutGRPOTrainer
