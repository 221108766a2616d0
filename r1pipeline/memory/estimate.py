"""The estimate: per-device memory of a composed config, from the config alone (no model, no data).

Per device, in GB (2^30 bytes), for each stage (stage=pipeline: each stage of its order, and the largest):
- model states: weights, gradients and optimizer states. ZeRO profiles: DeepSpeed's own estimator for the profile's
  stage, offload and process layout (`estimate_zero3_model_states_mem_needs`, `estimate_zero2_...` for stages 1-2).
  Otherwise bytes per parameter: weights in the model's dtype (auto: bf16 on GPU, fp32 on CPU), gradients alike, and
  AdamW's two moments in the parameter's dtype (torch.optim keeps them so; no fp32 master copy outside DeepSpeed).
  LoRA: the frozen base (linear layers at ~4.1 bits with model.load_in_4bit) plus the adapter trained in fp32 (peft
  upcasts it; TRL keeps it bf16 under ZeRO-3).
- reference model: GRPO with beta > 0 and no LoRA (TRL disables the adapter instead); sharded under ZeRO-3.
- activations (training): what autograd keeps per token and decoder layer (`layer_bytes`), for the stage's
  per-device batch x (prompt + completion) tokens; with gradient checkpointing, one hidden state per layer plus one
  layer recomputed. Checked against measured peaks on CPU (bench/results/memory_calibration.md).
- LM head (training): TRL 1.16 never materializes the [tokens, vocabulary] logits (GRPO and SFT score tokens through
  its chunked log-prob head): one [<=4096 tokens, <=32768 vocabulary] tile (on CPU its torch path: 9 fp32 copies
  in the backward, counted from TRL's code; ~8 measured), the head's and the hidden states' fp32 gradients.
- KV cache (rollout): GRPO's generation batch (per_device_train_batch_size x steps_per_generation rows), or a
  generating stage's generation.batch_size, over prompt + new tokens; under ZeRO-3 generation also gathers the whole
  model on each GPU (TRL's ds3_gather_for_generation). rollout=vllm: vLLM's share of the GPU instead.
- CUDA context: ~0.5 GB per GPU process, a typical figure, not measured here.
Training and rollout never hold their working sets at once: total = the rest + the larger of the two phases.
Prompt length is not known before the data loads: dataset.max_prompt_tokens where set, else 256 tokens (stated).
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field

GB = 2**30
ASSUMED_PROMPT_TOKENS = 256   # R1-style prompts: the project's Countdown prompt is ~245 tokens (README "Performance")
CUDA_CONTEXT_GB = 0.5         # a typical CUDA context + torch kernels per process; not measured here (no GPU)
CPU_HEAD_TILE_COPIES = 9      # TRL's torch path of its chunked head (no Triton): the backward's fp32 tile temporaries
NF4_BYTES = 4.127 / 8         # bitsandbytes NF4 with double quantization: 4 bits + ~0.127 bits of block scales


@dataclass(frozen=True)
class Part:
    name: str
    gb: float
    phase: str = "always"   # always | training | rollout
    kind: str = "states"    # what shrinks it (`levers`): states | reference | activations | kv | gather | vllm | fixed


@dataclass
class StageMemory:
    stage: str
    kind: str               # grpo | sft | reward | generate: what trains or samples (which fields shrink it)
    what: str               # the workload in words
    parts: list[Part]
    host_gb: float | None = None   # DeepSpeed's estimate of CPU RAM per machine (offload)

    def phase(self, name: str) -> float:
        return sum(p.gb for p in self.parts if p.phase == name)

    @property
    def total(self) -> float:
        return self.phase("always") + max(self.phase("training"), self.phase("rollout"))


@dataclass
class Estimate:
    hardware: str
    budget_gb: float | None         # hardware.gpu_memory_gb (None: CPU profile)
    model: str
    prompt_tokens: int
    prompt_assumed: bool
    stages: list[StageMemory] = field(default_factory=list)

    @property
    def peak(self) -> StageMemory:
        return max(self.stages, key=lambda s: s.total)

    @property
    def fits(self) -> bool:
        return self.budget_gb is None or self.peak.total <= self.budget_gb


@dataclass(frozen=True)
class Device:
    gpu: bool
    weight_bytes: int       # the model's dtype
    act_bytes: int          # activations: bf16 under autocast, else the model's dtype
    processes: int
    machines: int
    checkpointing: bool
    zero_stage: int = 0     # DeepSpeed, from the profile's accelerate config (launch/accelerate/*.yaml); 0: none
    offload_params: bool = False
    offload_optimizer: bool = False
    zero_init: bool = True


def device(cfg) -> Device:
    from r1pipeline.launcher import accelerate_settings, needs_launch

    hw = cfg.hardware
    gpu = not hw.use_cpu
    dtype = {"float32": 4, "bfloat16": 2, "float16": 2}.get(cfg.model.dtype, 2 if gpu else 4)
    dev = Device(gpu=gpu, weight_bytes=dtype, act_bytes=2 if hw.bf16 else dtype, processes=hw.num_processes,
                 machines=hw.get("num_machines", 1), checkpointing=bool(hw.gradient_checkpointing))
    settings = accelerate_settings(hw)[1] if needs_launch(hw) else {}
    if settings.get("distributed_type") != "DEEPSPEED":
        return dev
    z = settings.get("deepspeed_config") or {}
    return dataclasses.replace(dev, zero_stage=int(z.get("zero_stage", 0)),
                               zero_init=bool(z.get("zero3_init_flag", True)),
                               offload_params=z.get("offload_param_device", "none") not in (None, "none"),
                               offload_optimizer=z.get("offload_optimizer_device", "none") not in (None, "none"))


# ---------------------------------------------------------------------------------------------- model states
def model_states(shape, model_cfg, dev: Device) -> tuple[list[Part], float | None]:
    """Weights, gradients and optimizer states per device, and DeepSpeed's host RAM per machine (None without)."""
    lora = shape.lora_params if model_cfg.lora.enabled else 0
    trainable = lora or shape.params
    if dev.zero_stage:
        return zero_states(shape, trainable, bool(lora), dev)
    wb = dev.weight_bytes
    if not lora:
        parts = [Part("weights", shape.params * wb / GB), Part("gradients", shape.params * wb / GB),
                 Part("AdamW states (2 moments)", 2 * shape.params * wb / GB)]
    else:
        quantized = NF4_BYTES if model_cfg.get("load_in_4bit") else wb
        base = (shape.params - shape.linear_params) * wb + shape.linear_params * quantized
        parts = [Part("frozen base weights" + (" (4-bit)" if model_cfg.get("load_in_4bit") else ""), base / GB),
                 Part("LoRA adapter: fp32 weights, gradients, AdamW", lora * 16 / GB)]
    if dev.processes > 1:  # DDP keeps its gradient buckets beside .grad (gradient_as_bucket_view is off)
        parts.append(Part("DDP gradient buckets", trainable * (4 if lora else wb) / GB))
    return parts, None


def zero_states(shape, trainable: int, lora: bool, dev: Device) -> tuple[list[Part], float]:
    """DeepSpeed's estimators for the trainable parameters (ZeRO-1 has none of its own: ZeRO-2's, which partitions
    gradients too, is the closest); a frozen LoRA base is partitioned (ZeRO-3) or whole."""
    stage, per_node = dev.zero_stage, dev.processes // dev.machines
    offload_param = dev.offload_params and stage == 3
    if stage == 3:
        from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs

        host, gpu, _ = estimate_zero3_model_states_mem_needs(
            total_params=trainable, largest_layer_params=shape.largest_layer, num_gpus_per_node=per_node,
            num_nodes=dev.machines, cpu_offload=dev.offload_optimizer, cpu_offload_params=offload_param,
            zero_init=dev.zero_init)
    else:
        from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

        host, gpu = estimate_zero2_model_states_mem_needs(total_params=trainable, num_gpus_per_node=per_node,
                                                          num_nodes=dev.machines, cpu_offload=dev.offload_optimizer)
    offload = "+".join(n for n, on in (("params", offload_param), ("optimizer", dev.offload_optimizer)) if on)
    details = ", ".join(([f"offload {offload}"] if offload else []) + (["LoRA adapter"] if lora else []))
    parts = [Part(f"model states, DeepSpeed ZeRO-{stage} estimator" + (f" ({details})" if details else ""), gpu / GB)]
    if lora:
        base = (shape.params - trainable) * dev.weight_bytes
        if offload_param:
            host += base / dev.machines
        else:
            parts.append(Part("frozen base weights", base / (dev.processes if stage == 3 else 1) / GB))
    return parts, host / GB


def reference_model(shape, dev: Device) -> Part:
    """A frozen copy of the policy for the KL term: sharded like the policy under ZeRO-3 (on CPU with param offload)."""
    size = shape.params * dev.weight_bytes
    if dev.zero_stage == 3:
        size = 0 if dev.offload_params else size / dev.processes
    return Part("reference model (beta > 0)", size / GB, kind="reference")


# ---------------------------------------------------------------------------------------------- working sets
def layer_bytes(shape, act_bytes: int) -> float:
    """Bytes one decoder layer (Llama / Qwen2: RMSNorm, SDPA attention, SwiGLU MLP) keeps for its backward per token:
    each of its two RMSNorms an fp32 input (4h bytes; the norm upcasts) and its normalized and scaled outputs (2 x a h);
    attention its q, k, v and output (a (2h + 2 kv)); the MLP its gate, up, silu(gate) and their product (4 a I).
    SDPA's flash / memory-efficient kernels keep no [tokens x tokens] scores."""
    h, a = shape.hidden, act_bytes
    return 2 * (4 * h + 2 * a * h) + a * (2 * h + 2 * shape.kv_dim) + 4 * a * shape.intermediate


def activations(shape, tokens: int, dev: Device) -> Part:
    per_token = shape.layers * layer_bytes(shape, dev.act_bytes)
    name = "activations"
    if dev.checkpointing:  # each layer's input hidden state, and one layer recomputed during the backward
        per_token = shape.layers * shape.hidden * dev.act_bytes + layer_bytes(shape, dev.act_bytes)
        name += " (gradient checkpointing)"
    return Part(name, tokens * per_token / GB, "training", "activations")


def lm_head(shape, tokens: int, scored: int, dev: Device, head_trains: bool) -> Part:
    """TRL's chunked log-prob head: one projection tile (on GPU only the scored tokens; TRL's Triton kernel works in
    place) or, on CPU, the torch path's fp32 temporaries; plus the fp32 gradients of the head and the hidden states."""
    from trl.kernels.chunked_logprob import TOKEN_CHUNK_SIZE
    from trl.trainer.utils import _CHUNKED_LOGPROB_CHUNK_SIZE  # private: tests/test_memory.py trips when it goes

    rows = min(scored if dev.gpu else tokens, TOKEN_CHUNK_SIZE)
    tile = rows * min(shape.vocab, _CHUNKED_LOGPROB_CHUNK_SIZE)
    size = tile * (dev.act_bytes if dev.gpu else 4 * CPU_HEAD_TILE_COPIES) + tokens * shape.hidden * 4
    if head_trains:
        size += shape.vocab * shape.hidden * 4
    return Part("LM head (TRL chunked log-probs)", size / GB, "training", "activations")


def kv_cache(shape, rows: int, length: int, dev: Device) -> Part:
    return Part(f"KV cache ({rows} x {length} tokens)", rows * length * 2 * shape.layers * shape.kv_dim
                * dev.weight_bytes / GB, "rollout", "kv")


def rollout_parts(cfg, shape, rows: int, length: int, dev: Device, gather: bool) -> list[Part]:
    """Generation's working set: vLLM's reserved share, or the KV cache (and the whole model, gathered by ZeRO-3)."""
    if cfg.rollout.engine == "vllm":
        return [Part(f"vLLM (rollout.gpu_memory_utilization={cfg.rollout.gpu_memory_utilization})",
                     cfg.rollout.gpu_memory_utilization * (cfg.hardware.get("gpu_memory_gb") or 0), kind="vllm")]
    parts = [kv_cache(shape, rows, length, dev)]
    if gather and dev.zero_stage == 3:
        parts.append(Part("whole model gathered for generation (ZeRO-3)", shape.params * dev.weight_bytes / GB,
                          "rollout", "gather"))
    return parts


# ---------------------------------------------------------------------------------------------- stages
def trainer_fields(stage, cls) -> dict:
    """`stage.trainer` over the defaults of the TRL config class that receives it."""
    from omegaconf import OmegaConf

    defaults = {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
    return {**defaults, **OmegaConf.to_container(stage.trainer, resolve=True)}


def training_parts(cfg, shape, dev: Device, tokens: int, scored: int | None) -> tuple[list[Part], float | None]:
    """Model states, activations and (`scored` tokens; None: no LM head, a reward model) the LM head."""
    parts, host = model_states(shape, cfg.model, dev)
    parts.append(activations(shape, tokens, dev))
    if scored is not None:
        parts.append(lm_head(shape, tokens, scored, dev, head_trains=not cfg.model.lora.enabled))
    return parts, host


def grpo_stage(cfg, shape, dev: Device, prompt: int) -> StageMemory:
    from trl import GRPOConfig

    t = trainer_fields(cfg.stage, GRPOConfig)
    batch, completion = t["per_device_train_batch_size"], t["max_completion_length"]
    rows = (t["generation_batch_size"] // dev.processes if t["generation_batch_size"]
            else batch * (t["steps_per_generation"] or t["gradient_accumulation_steps"]))
    parts, host = training_parts(cfg, shape, dev, batch * (prompt + completion), batch * completion)
    if t["beta"] > 0 and not cfg.model.lora.enabled:
        parts.append(reference_model(shape, dev))
    parts += rollout_parts(cfg, shape, rows, prompt + completion, dev, t["ds3_gather_for_generation"])
    what = f"GRPO, micro-batch of {batch} completions x ({prompt} + {completion}) tokens, rollouts of {rows} rows"
    return StageMemory(cfg.stage.name, "grpo", what, parts, host)


def sft_stage(cfg, shape, dev: Device, reward: bool = False) -> StageMemory:
    """SFT (TRL SFTTrainer) or, `reward`, a reward model (RewardTrainer: chosen and rejected rows, a scalar head)."""
    from trl import RewardConfig, SFTConfig

    t = trainer_fields(cfg.stage, RewardConfig if reward else SFTConfig)
    rows = t["per_device_train_batch_size"] * (2 if reward else 1)
    tokens = rows * t["max_length"]
    parts, host = training_parts(cfg, shape, dev, tokens, None if reward else tokens)
    kind = "reward model, chosen + rejected" if reward else "SFT"
    what = f"{kind}, micro-batch of {rows} rows x {t['max_length']} tokens"
    return StageMemory(cfg.stage.name, "reward" if reward else "sft", what, parts, host)


def generate_stage(cfg, shape, dev: Device, prompt: int, name: str | None = None) -> StageMemory:
    """A generating stage: the whole model in every process (no optimizer, no ZeRO) and its batch's KV cache."""
    g = cfg.stage.generation
    weights = Part("weights (inference)", shape.params * dev.weight_bytes / GB, kind="fixed")
    parts = [] if cfg.rollout.engine == "vllm" else [weights]  # vLLM holds its own copy within its share
    parts += rollout_parts(cfg, shape, g.batch_size, prompt + g.max_new_tokens, dev, gather=False)
    what = f"generation, {g.batch_size} rows x ({prompt} + {g.max_new_tokens}) tokens"
    return StageMemory(name or cfg.stage.name, "generate", what, parts)


def stage_memory(cfg, dev: Device, prompt: int) -> list[StageMemory]:
    """The estimate of one stage (distill: its teacher's generation, then its student's SFT)."""
    from r1pipeline.shapes import shape
    from r1pipeline.stages import STAGES

    kind, model = STAGES[cfg.stage.name].module, shape(cfg.model)
    if kind in ("grpo", "align"):
        found = [grpo_stage(cfg, model, dev, prompt)]
    elif kind in ("sft", "reward_model"):
        found = [sft_stage(cfg, model, dev, reward=kind == "reward_model")]
    elif kind == "distill":
        student = copy.deepcopy(cfg)
        student.model = cfg.stage.student
        found = [generate_stage(cfg, model, dev, prompt, "distill (teacher)"),
                 sft_stage(student, shape(cfg.stage.student), dev)]
        found[1].stage = "distill (student)"
    else:
        found = [generate_stage(cfg, model, dev, prompt)]
    if dev.gpu:
        for s in found:
            s.parts.append(Part("CUDA context (typical, not measured here)", CUDA_CONTEXT_GB, kind="fixed"))
    return found


def estimate(cfg, prompt_tokens: int | None = None) -> Estimate:
    """Per-device memory of the configured stage (stage=pipeline: of each stage in its order), from the config alone.
    `prompt_tokens` overrides the prompt length (default: dataset.max_prompt_tokens, else ASSUMED_PROMPT_TOKENS)."""
    from r1pipeline.shapes import shape
    from r1pipeline.stages.pipeline import stage_cfg

    budget = cfg.hardware.get("gpu_memory_gb")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget <= 0):
        raise ValueError(f"hardware.gpu_memory_gb: {budget!r} must be the GB of one GPU (e.g. 80) or null")
    prompt = prompt_tokens or cfg.dataset.get("max_prompt_tokens")
    model = shape(cfg.model)
    lora = f", LoRA {model.lora_params / 1e6:.1f}M" if cfg.model.lora.enabled else ""
    about = f"{cfg.model.name} ({model.params / 1e9:.2f}B params{lora}; shape from {model.source})"
    est = Estimate(cfg.hardware.name, budget, about, prompt or ASSUMED_PROMPT_TOKENS, prompt is None)
    dev = device(cfg)
    names = list(cfg.stage.order) if cfg.stage.name == "pipeline" else [None]
    for name in names:
        est.stages += stage_memory(stage_cfg(cfg, name) if name else cfg, dev, est.prompt_tokens)
    return est
