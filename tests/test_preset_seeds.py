"""Each reference preset is its seed's run: the values each seed states (and, where it is silent, the TRL default of
its time or the R1 paper's value), transcribed here as data from the five reproductions in shared/seeds/, checked
against the preset composed exactly as a user composes it: `experiment=<name>` and nothing else.

A row is (field of the composed config, value, source, evidence). `source` says where the value comes from, as the
preset's header does: "000".."004" the seed states it (evidence: a short string of the seed's text that states
it; checked against shared/seeds/ where this checkout can see that folder), "TRL 0.14" / "TRL 0.15" / "TRL 0.18"
the seed is silent and TRL's default of its weeks applies, "R1" the R1 paper's value, "deviation" the preset departs
from the seed on purpose (evidence: a phrase of the preset's header that gives the reason)."""
from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import compose_cfg

CONF = Path(__file__).resolve().parent.parent / "conf" / "experiment"
R1_SYSTEM = ("A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The "
             "assistant first thinks about the reasoning process in the mind and then provides the user with the "
             "answer. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> "
             "tags, respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>")

# TRL's GRPO defaults of early 2025 (0.14 and 0.15 agree on these; TRL 1.16 names the loss "grpo")
TRL_2025 = [("temperature", 0.9), ("top_p", 1.0), ("beta", 0.04), ("loss_type", "grpo"), ("num_generations", 8),
            ("max_completion_length", 256), ("epsilon", 0.2), ("scale_rewards", "group"), ("num_iterations", 1),
            ("mask_truncated_completions", False)]


def grpo_defaults(prefix: str, version: str, **changed) -> list[tuple]:
    """The GRPOConfig defaults of TRL `version`, as rows for the trainer block at `prefix`."""
    return [(f"{prefix}.{k}", changed.get(k, v), version, None) for k, v in TRL_2025]


TUTORIAL_GRPO = [  # seeds/002's TrainingArguments for GRPO (seeds/000 follows them)
    ("num_train_epochs", 1, "num_train_epochs=1"), ("max_steps", -1, "num_train_epochs=1"),
    ("learning_rate", 5e-5, "learning_rate=5e-5"), ("warmup_steps", 0.1, "warmup_ratio=0.1"),
    ("weight_decay", 0.01, "weight_decay=0.01"), ("per_device_train_batch_size", 8, "per_device_train_batch_size=8"),
    ("gradient_accumulation_steps", 2, "gradient_accumulation_steps=2"), ("logging_steps", 10, "logging_steps=10"),
    ("save_steps", 50, "save_steps=50"), ("save_total_limit", 2, "save_total_limit=2"),
    ("eval_strategy", "steps", 'evaluation_strategy="steps"'), ("eval_steps", 50, "eval_steps=50"),
    ("per_device_eval_batch_size", 16, "per_device_eval_batch_size=16"), ("lr_scheduler_type", "linear", None),
]
TUTORIAL_SFT = [  # seeds/002's SFT TrainingArguments
    ("num_train_epochs", 1, "num_train_epochs=1"), ("learning_rate", 2e-5, "learning_rate=2e-5"),
    ("warmup_steps", 0.1, "warmup_ratio=0.1"), ("weight_decay", 0.01, "weight_decay=0.01"),
    ("per_device_train_batch_size", 8, "per_device_train_batch_size=8"),
    ("gradient_accumulation_steps", 2, "gradient_accumulation_steps=2"), ("packing", True, "packing=True"),
    ("max_length", 4096, "max_seq_length=4096"), ("lr_scheduler_type", "linear", None),
]


def rows(prefix: str, table: list[tuple], source: str) -> list[tuple]:
    return [(f"{prefix}.{k}", v, source, quote) for k, v, quote in table]


STATED: dict[str, list[tuple]] = {
    "r1_zero_tutorial": [
        ("model.path", "Qwen/Qwen2.5-7B-Instruct", "000", '--model_name "Qwen/Qwen2.5-7B-Instruct"'),
        ("model.dtype", "bfloat16", "000", '--torch_dtype "bfloat16"'),
        ("model.lora.enabled", False, "000", None),
        ("dataset.path", "AI-MO/NuminaMath-TIR", "deviation", "trains on the tutorial's NuminaMath-TIR"),
        ("dataset.train_size", None, "002", "Train set size: 72441"),
        ("dataset.test_size", 99, "002", "Test set size: 99"),
        ("dataset.max_prompt_tokens", 512, "TRL 0.18", None),
        ("dataset.prompt.system", R1_SYSTEM, "002", "A conversation between User and Assistant"),
        ("dataset.prompt.user_template", "{question}", "002", '{"role": "user", "content": example["problem"]}'),
        ("dataset.prompt.prefill", "", "002", None),
        ("reward.accuracy.weight", 1.0, "000", "--reward_funcs accuracy format reasoning_steps cosine repetition_penalty"),
        ("reward.format.weight", 1.0, "000", None),
        ("reward.reasoning_steps.weight", 1.0, "000", None),
        ("reward.reasoning_steps.min_steps", 3, "002", "min(1.0, count / 3)"),
        ("reward.cosine.weight", 1.0, "000", None),
        ("reward.cosine.min_value_wrong", -0.5, "000", "--cosine_min_value_wrong -0.5"),
        ("reward.cosine.max_value_wrong", -0.1, "002", "default=-0.1"),
        ("reward.cosine.min_value_correct", 0.8, "002", "default=0.8"),
        ("reward.cosine.max_value_correct", 1.0, "000", "--cosine_max_value_correct 1.0"),
        ("reward.cosine.max_len", 1000, "002", "default=1000"),
        ("reward.repetition_penalty.weight", 1.0, "000", None),
        ("reward.repetition_penalty.ngram_size", 3, "000", "--repetition_n_grams 3"),
        ("reward.repetition_penalty.max_penalty", -0.1, "002", "repetition_max_penalty: float = -0.1"),
        *rows("stage.trainer", TUTORIAL_GRPO, "002"),
        ("stage.trainer.learning_rate", 5e-5, "000", "--learning_rate 5e-5"),
        ("stage.trainer.per_device_train_batch_size", 8, "000", "--per_device_train_batch_size 8"),
        ("stage.trainer.gradient_accumulation_steps", 2, "000", "--gradient_accumulation_steps 2"),
        *grpo_defaults("stage.trainer", "TRL 0.18", temperature=1.0, loss_type="bnpo"),
        ("stage.trainer.eval_on_start", False, "002", None),
        ("stage.eval_prompts", None, "002", "eval_dataset=dataset['test']"),
        ("seed", 42, "002", "seed=42"),
        ("hardware.bf16", True, "002", "bf16=True"),
        ("hardware.gradient_checkpointing", True, "002", "gradient_checkpointing=True"),
        ("rollout.engine", "hf", "TRL 0.18", None),
    ],
    "r1_step_by_step": [
        ("model.path", "Qwen/Qwen2.5-0.5B-Instruct", "001", "Qwen/Qwen2.5-0.5B-Instruct"),
        ("model.dtype", "float32", "TRL 0.15", None),
        ("hardware.bf16", False, "TRL 0.15", None),
        ("model.lora.enabled", False, "001", None),
        ("dataset.path", "AI-MO/NuminaMath-TIR", "001", "AI-MO/NuminaMath-TIR"),
        ("dataset.train_size", None, "001", None),
        ("dataset.test_size", 99, "001", None),
        ("dataset.max_prompt_tokens", 512, "TRL 0.15", None),
        ("dataset.prompt.system", R1_SYSTEM, "R1", None),
        ("dataset.prompt.user_template", "{question}", "R1", None),
        ("dataset.prompt.prefill", "", "R1", None),
        ("reward.format.weight", 1.0, "R1", None),
        ("reward.correct.weight", 1.0, "R1", None),
        ("stage.order", ["r1_zero", "cold_start", "sft1", "eval"], "001", "--mode all"),
        ("stage.cold_start.methods", ["load"], "001", "Reasoning data for R1 SFT"),
        ("stage.cold_start.load.path", "bespokelabs/Bespoke-Stratos-17k", "001", "bespokelabs/Bespoke-Stratos-17k"),
        ("stage.cold_start.load.limit", None, "001", None),
        ("stage.sft1.inputs.model", "base", "001", "Fine-tune the base model on cold start data"),
        ("stage.r1_zero.trainer.learning_rate", 1e-6, "TRL 0.15", None),
        ("stage.r1_zero.trainer.num_train_epochs", 3, "TRL 0.15", None),
        ("stage.r1_zero.trainer.per_device_train_batch_size", 8, "TRL 0.15", None),
        ("stage.r1_zero.trainer.gradient_accumulation_steps", 1, "TRL 0.15", None),
        ("stage.r1_zero.trainer.lr_scheduler_type", "linear", "TRL 0.15", None),
        ("stage.r1_zero.trainer.warmup_steps", 0, "TRL 0.15", None),
        *grpo_defaults("stage.r1_zero.trainer", "TRL 0.15"),
        ("stage.sft1.trainer.learning_rate", 2e-5, "TRL 0.15", None),
        ("stage.sft1.trainer.num_train_epochs", 3, "TRL 0.15", None),
        ("stage.sft1.trainer.per_device_train_batch_size", 8, "TRL 0.15", None),
        ("stage.sft1.trainer.gradient_accumulation_steps", 1, "TRL 0.15", None),
        ("stage.sft1.trainer.max_length", 1024, "TRL 0.15", None),
        ("stage.sft1.trainer.packing", False, "TRL 0.15", None),
        ("seed", 42, "TRL 0.15", None),
        ("rollout.engine", "hf", "TRL 0.15", None),
    ],
    "r1_full": [
        ("model.path", "Qwen/Qwen2.5-0.5B-Instruct", "002", 'MODEL_NAME = "Qwen/Qwen2.5-0.5B-Instruct"'),
        ("model.dtype", "bfloat16", "002", 'torch_dtype="bfloat16"'),
        ("model.lora.enabled", False, "002", None),
        ("dataset.path", "AI-MO/NuminaMath-TIR", "002", '"AI-MO/NuminaMath-TIR"'),
        ("dataset.train_size", None, "002", "Train set size: 72441"),
        ("dataset.test_size", 99, "002", "Test set size: 99"),
        ("dataset.max_prompt_tokens", 512, "TRL 0.15", None),
        ("dataset.prompt.system", R1_SYSTEM, "002", "A conversation between User and Assistant"),
        ("dataset.prompt.user_template", "{question}", "002", '{"role": "user", "content": example["problem"]}'),
        ("dataset.prompt.prefill", "", "002", None),
        ("reward.accuracy.weight", 1.0, "002", 'default_factory=lambda: ["accuracy", "format"]'),
        ("reward.format.weight", 1.0, "002", None),
        *rows("stage.r1_zero.trainer", TUTORIAL_GRPO, "002"),
        *grpo_defaults("stage.r1_zero.trainer", "TRL 0.15"),
        ("stage.cold_start.methods", ["load"], "002", 'dataset_sft = load_dataset("HuggingFaceH4/Bespoke-Stratos-17k"'),
        ("stage.cold_start.load.path", "HuggingFaceH4/Bespoke-Stratos-17k", "002", "HuggingFaceH4/Bespoke-Stratos-17k"),
        ("stage.cold_start.load.split", "train", "002", "split='train'"),
        ("stage.cold_start.load.limit", None, "002", None),
        ("stage.sft1.inputs.model", "base", "002", "model_sft = AutoModelForCausalLM.from_pretrained"),
        *rows("stage.sft1.trainer", TUTORIAL_SFT, "002"),
        ("stage.reasoning_rl.inputs.model", "sft1", "002", "Reasoning-Oriented RL"),
        ("stage.reasoning_rl.rewards.accuracy.weight", 1.0, "002", "Language Consistency Reward** alongside accuracy"),
        ("stage.reasoning_rl.rewards.language_consistency.weight", 1.0, "002", None),
        *rows("stage.reasoning_rl.trainer", TUTORIAL_GRPO, "002"),
        *grpo_defaults("stage.reasoning_rl.trainer", "TRL 0.15"),
        ("stage.rejection_sampling.inputs.model", "reasoning_rl", "002", None),
        ("stage.rejection_sampling.non_reasoning.share", 0.25, "R1", None),
        ("stage.sft2.inputs.model", "base", "R1", None),
        ("stage.sft2.trainer.num_train_epochs", 2, "R1", None),
        ("stage.align.inputs.model", "sft2", "R1", None),
        ("stage.distill.inputs.model", "align", "R1", None),
        ("stage.order", ["r1_zero", "cold_start", "sft1", "reasoning_rl", "rejection_sampling", "sft2", "reward_model",
                         "align", "distill", "eval"], "002", None),
        ("seed", 42, "002", "seed=42"),
        ("hardware.bf16", True, "002", "bf16=True"),
        ("hardware.gradient_checkpointing", True, "002", "gradient_checkpointing=True"),
        ("rollout.engine", "hf", "TRL 0.15", None),
    ],
    "grpo_gsm8k": [
        ("model.path", "Qwen/Qwen2.5-1.5B", "003", "Qwen1.5B"),
        ("model.dtype", "bfloat16", "003", "flash attention"),
        ("model.lora.enabled", False, "003", None),
        ("dataset.path", "openai/gsm8k", "003", "grade school math dataset"),
        ("dataset.train_size", None, "003", None),
        ("dataset.test_size", 1319, "003", "results on the validation set"),
        ("dataset.max_prompt_tokens", 512, "TRL 0.15", None),
        ("dataset.prompt.system", R1_SYSTEM, "R1", None),
        ("dataset.prompt.user_template", "{question}", "R1", None),
        ("reward.format.weight", 1.0, "R1", None),
        ("reward.correct.weight", 1.0, "R1", None),
        ("stage.order", ["r1_zero", "eval"], "003", None),
        ("stage.r1_zero.trainer.max_steps", 400, "003", "After ~400 training steps"),
        ("stage.r1_zero.trainer.learning_rate", 1e-6, "TRL 0.15", None),
        ("stage.r1_zero.trainer.per_device_train_batch_size", 8, "TRL 0.15", None),
        ("stage.r1_zero.trainer.gradient_accumulation_steps", 1, "TRL 0.15", None),
        ("stage.r1_zero.trainer.lr_scheduler_type", "linear", "TRL 0.15", None),
        *grpo_defaults("stage.r1_zero.trainer", "TRL 0.15"),
        ("stage.r1_zero.trainer.eval_strategy", "steps", "003", "this shows a clearer sign of learning"),
        ("hardware.num_processes", 1, "003", "single H100 GPU"),
        ("hardware.bf16", True, "003", None),
        ("rollout.engine", "hf", "003", None),
    ],
    "mini_r1_countdown": [
        ("model.path", "Qwen/Qwen2.5-3B-Instruct", "004", "Qwen2.5-3B-Instruct"),
        ("model.dtype", "bfloat16", "004", "torch_dtype: bfloat16"),
        ("model.lora.enabled", True, "004", "use_peft=True"),
        ("model.lora.r", 16, "TRL 0.14", None),
        ("model.lora.alpha", 32, "TRL 0.14", None),
        ("model.lora.dropout", 0.05, "TRL 0.14", None),
        ("model.lora.target_modules", None, "TRL 0.14", None),
        ("model.load_in_4bit", False, "deviation", "cannot be partitioned by ZeRO-3"),
        ("dataset.path", "Jiayi-Pan/Countdown-Tasks-3to4", "004", "Countdown-Tasks-3to4"),
        ("dataset.train_size", None, "004", "490K entries"),
        ("dataset.test_size", 0.1, "004", "train_test_split(test_size=0.1)"),
        ("dataset.max_prompt_tokens", 256, "004", "max_prompt_length: 256"),
        ("dataset.prompt.system", None, "004", None),
        ("dataset.prompt.prefill", "Let's solve this step by step.\n<think>", "004",
         '"content": "Let\'s solve this step by step.\\n<think>"'),
        ("reward.format.weight", 1.0, "004", "reward_funcs=[format_reward_func, answer_reward_func]"),
        ("reward.countdown.weight", 1.0, "004", None),
        ("stage.order", ["r1_zero", "eval"], "004", None),
        ("stage.r1_zero.trainer.max_steps", 450, "004", "max_steps: 450"),
        ("stage.r1_zero.trainer.learning_rate", 5e-7, "004", "learning_rate: 5.0e-7"),
        ("stage.r1_zero.trainer.lr_scheduler_type", "cosine", "004", "lr_scheduler_type: cosine"),
        ("stage.r1_zero.trainer.warmup_steps", 0.03, "004", "warmup_ratio: 0.03"),
        ("stage.r1_zero.trainer.per_device_train_batch_size", 1, "004", "per_device_train_batch_size: 1"),
        ("stage.r1_zero.trainer.gradient_accumulation_steps", 8, "004", "gradient_accumulation_steps: 8"),
        ("stage.r1_zero.trainer.num_generations", 2, "004", "num_generations: 2"),
        ("stage.r1_zero.trainer.max_completion_length", 1024, "004", "max_completion_length: 1024"),
        ("stage.r1_zero.trainer.beta", 0.001, "004", "beta: 0.001"),
        ("stage.r1_zero.trainer.logging_steps", 1, "004", "logging_steps: 1"),
        ("stage.r1_zero.trainer.save_steps", 100, "004", "save_steps: 100"),
        ("stage.r1_zero.trainer.max_grad_norm", 1.0, "004", "gradient_clipping: 1.0"),
        *grpo_defaults("stage.r1_zero.trainer", "TRL 0.14", num_generations=2, max_completion_length=1024,
                       beta=0.001),
        ("seed", 2025, "004", "seed: 2025"),
        ("hardware.num_processes", 2, "004", "num_processes: 2"),
        ("hardware.accelerate_config", "launch/accelerate/zero3_offload.yaml", "004", "offload_param_device: cpu"),
        ("hardware.bf16", True, "004", "mixed_precision: bf16"),
        ("hardware.gradient_checkpointing", False, "004", "gradient_checkpointing: false"),
        ("tracking.backend", "swanlab", "004", "SwanLabCallback"),
        ("tracking.project", "Try_r1", "004", "project: Try_r1"),
        ("rollout.engine", "hf", "004", "use_vllm: false"),
    ],
}
SOURCES = {"000", "001", "002", "003", "004", "TRL 0.14", "TRL 0.15", "TRL 0.18", "R1", "deviation"}


def _seeds_dir() -> Path | None:
    """shared/seeds/ beside this checkout (the workspace layout), or R1_SEEDS_DIR; None where neither exists."""
    env = os.environ.get("R1_SEEDS_DIR")
    here = Path(__file__).resolve()
    for candidate in ([Path(env)] if env else []) + [p / "shared" / "seeds" for p in here.parents]:
        if candidate.is_dir():
            return candidate
    return None


def _cases():
    return [pytest.param(name, field, value, source, quote, id=f"{name}:{field}")
            for name, table in STATED.items() for field, value, source, quote in table]


@functools.lru_cache(maxsize=None)
def _composed(name: str):
    return compose_cfg([f"experiment={name}"])  # as a user composes it: no override


@pytest.mark.parametrize("name,field,value,source,quote", _cases())
def test_preset_holds_its_seeds_value(name, field, value, source, quote):
    assert source in SOURCES
    got = OmegaConf.select(_composed(name), field, default="<missing>")
    got = OmegaConf.to_container(got) if OmegaConf.is_config(got) else got
    assert got == value, f"{name}: {field} is {got!r}; its seed's run has {value!r} ({source})"


def test_every_checked_field_of_a_trainer_block_is_a_trl_field():
    """A misspelt field in the table would check nothing: every trainer field it names exists in TRL's configs."""
    from trl import GRPOConfig, SFTConfig

    known = set(GRPOConfig.__dataclass_fields__) | set(SFTConfig.__dataclass_fields__)
    for table in STATED.values():
        for field, *_ in table:
            if ".trainer." in field:
                assert field.rsplit(".", 1)[1] in known, field


@pytest.mark.parametrize("name", sorted(STATED))
def test_deviations_are_listed_in_the_presets_header(name):
    header = "\n".join(line for line in (CONF / f"{name}.yaml").read_text().splitlines() if line.startswith("#"))
    assert "Deviations" in header, name
    flat = " ".join(header.replace("#", " ").split())
    for field, _, source, quote in STATED[name]:
        if source == "deviation":
            assert quote and quote in flat, f"{name}: the header does not give the reason for {field} ({quote!r})"


@pytest.mark.parametrize("name", sorted(STATED))
def test_the_evidence_quoted_for_each_stated_value_is_in_the_seed(name):
    seeds = _seeds_dir()
    if seeds is None:
        pytest.skip("shared/seeds/ is not beside this checkout (set R1_SEEDS_DIR to check the quotes)")
    texts = {p.name[:3]: p.read_text(errors="replace") for p in seeds.glob("00*.txt")}
    for field, _, source, quote in STATED[name]:
        if quote and source in texts:
            assert quote in texts[source], f"{name}: {field}: {quote!r} is not in seeds/{source}"


@pytest.mark.parametrize("name", sorted(STATED))
def test_a_gpu_preset_composes_no_cpu_sizes(name):
    """The presets pin their hardware, and no CPU shape (conf/shape/*_cpu.yaml) reaches them: every GRPO block
    generates at least 256 tokens (the CPU main job: 48)."""
    cfg = _composed(name)
    assert not cfg.hardware.use_cpu, name
    blocks = [cfg.stage] if cfg.stage.name == "r1_zero" else [cfg.stage[s] for s in cfg.stage.order
                                                               if s in ("r1_zero", "reasoning_rl", "align")]
    for block in blocks:
        assert block.trainer.max_completion_length >= 256, (name, block.name)


@pytest.mark.parametrize("name", sorted(STATED))
def test_every_preset_validates_at_its_own_shapes_and_hardware(name, embedded_model_dir, monkeypatch):
    """Past the table: everything else the preset composes passes validation as it stands (batch shapes against TRL's
    rules on its hardware's process count, data sizes, reward mixes, every stage of its order), with the seed's Qwen
    model swapped for a local checkpoint (no hub here) and the GPUs not asked for (this machine has none)."""
    import importlib.util

    from r1pipeline.config import validate

    cfg = compose_cfg([f"experiment={name}", f"model.path={embedded_model_dir}"])
    if cfg.hardware.accelerate_config and importlib.util.find_spec("deepspeed") is None:
        pytest.skip("its hardware profile needs DeepSpeed, which is not installed here")
    validate(cfg, devices=False)
