"""A model's shape without its weights: parameter counts and the architecture numbers the memory estimate needs
(r1pipeline/memory.py), from the model block alone.

Where the numbers come from, in order:
  - `model.path` that is here (the embedded model, a checkpoint directory): its own config (models.load_config);
  - `model.architecture`, the config.json fields of a hub model copied into its YAML (conf/model/qwen2.5_*.yaml),
    so a model that cannot be downloaded still has a shape;
  - a hub id in the local hub cache.
The config (with `model.config_overrides` where `model.random_init`, as models.load_model applies them) builds its
transformers model class on PyTorch's meta device: transformers counts its parameters and peft its LoRA adapter, and no
memory is allocated (a 7B model in ~0.1 s after the first import).
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from r1pipeline.models import EMBEDDED_PREFIX, load_config, peft_config


@dataclass(frozen=True)
class Shape:
    params: int             # every parameter once (tied input/output embeddings once)
    largest_layer: int      # the most parameters one module holds itself: DeepSpeed's ZeRO-3 "largest layer"
    lora_params: int        # the LoRA adapter's parameters (model.lora), 0 without LoRA
    linear_params: int      # parameters of the decoder's nn.Linear layers: what 4-bit loading quantizes
    hidden: int
    layers: int
    kv_dim: int             # key/value width per token and layer: kv heads x head dim
    intermediate: int
    vocab: int
    tied: bool              # output projection shares the input embedding
    source: str             # where the numbers came from


class UnknownShape(LookupError):
    """The model block says nothing this machine can read about the model's architecture."""


def model_config(model_cfg):
    """The transformers config the model would be built from (see the module doc for the order)."""
    from transformers import AutoConfig

    overrides = dict(model_cfg.config_overrides or {}) if model_cfg.get("random_init") else {}
    path, arch = model_cfg.path, model_cfg.get("architecture")
    here = path.startswith(EMBEDDED_PREFIX) or Path(path).expanduser().is_dir()
    if arch and not here:
        arch = dict(OmegaConf.to_container(arch, resolve=True))
        return AutoConfig.for_model(arch.pop("model_type"), **arch, **overrides), "model.architecture"
    try:
        return load_config(path, **overrides), path
    except OSError as exc:  # a hub id neither cached nor described
        raise UnknownShape(f"model.path {path}: no config here ({type(exc).__name__}) and no model.architecture "
                           f"block; add its config.json fields under model.architecture") from None


def shape(model_cfg) -> Shape:
    """The Shape of the model block `model_cfg` (cached per block)."""
    block = OmegaConf.to_container(model_cfg, resolve=True)
    return _shape(json.dumps({k: block.get(k) for k in ("path", "architecture", "random_init", "config_overrides",
                                                         "lora")}, sort_keys=True))


@functools.lru_cache(maxsize=None)
def _shape(key: str) -> Shape:
    import torch
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING

    model_cfg = OmegaConf.create(json.loads(key))
    config, source = model_config(model_cfg)
    # The config's causal-LM class, built on the meta device: parameter shapes only, nothing allocated or read. Not
    # AutoModelForCausalLM.from_config, the path a model load takes (which tests/conftest.py keeps out of the fast
    # test layer, where this estimate belongs: it runs before anything loads).
    with torch.device("meta"):
        model = MODEL_FOR_CAUSAL_LM_MAPPING[type(config)](config)
    text = config.get_text_config()
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    counts = dict(params=model.num_parameters(), largest_layer=largest_layer(model), linear_params=linear_params(model))
    counts["lora_params"] = lora_params(model, model_cfg)  # last: peft wraps the model's linear layers in place
    return Shape(**counts, hidden=text.hidden_size, layers=text.num_hidden_layers,
                 kv_dim=(getattr(text, "num_key_value_heads", None) or heads) * head_dim,
                 intermediate=text.intermediate_size, vocab=text.vocab_size,
                 tied=bool(getattr(text, "tie_word_embeddings", False)), source=source)


def largest_layer(model) -> int:
    """DeepSpeed's "largest layer" (deepspeed.runtime.zero.stage3.model_to_params): the most parameters held by one
    module itself. Counted here because model_to_params' total deduplicates by data_ptr(), which is 0 for every
    meta tensor (tests/test_memory.py compares the two on a real model)."""
    return max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules())


def linear_params(model) -> int:
    import torch

    head = model.get_output_embeddings()
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not head)


def lora_params(model, model_cfg) -> int:
    """Trainable parameters peft adds for `model.lora` (0 when LoRA is off)."""
    lora = peft_config(model_cfg)
    if lora is None:
        return 0
    import warnings

    from peft import get_peft_model

    with warnings.catch_warnings():  # peft 0.21 reads transformers 5.23's deprecated is_gradient_checkpointing
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        return get_peft_model(model, lora).get_nb_trainable_parameters()[0]
