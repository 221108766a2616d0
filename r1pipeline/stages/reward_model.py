"""The reward model for R1's last RL stage: TRL's RewardTrainer on preference pairs.

python -m r1pipeline stage=reward_model [stage.preferences.source=hub stage.preferences.path=<chosen/rejected set>]

The backbone is the stage's input model (the model group by default) loaded as a sequence-classification model with
one output (a fresh scoring head on the pretrained body); the Bradley-Terry loss of RewardTrainer pushes
r(prompt, chosen) above r(prompt, rejected). The pairs are the built-in helpfulness/harmlessness set or a hub/local
set in the usual chosen/rejected schema (r1pipeline/data/preferences.py). After training the stage scores its own
pairs and reports how often chosen ranks above rejected (`metrics.pair_accuracy`, before and after), then hands
`<stage>/model` on to `stage=align` (`stage.inputs.reward_model`) or the `reward_model` reward. With
`model.lora.enabled=true` LoRA adapters train on the body (the new head trains whole); the stage saves them to
`<stage>/adapter` and merges them into `<stage>/model`, the same plain sequence-classification checkpoint.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from datasets import Dataset

from r1pipeline import callbacks as cb
from r1pipeline.data.preferences import check_source, load_preferences
from r1pipeline.errors import ConfigError
from r1pipeline.models import gathered, load_tokenizer, peft_config, torch_dtype, whole_models
from r1pipeline.monitor import StageMonitor
from r1pipeline.plots import summarize_metrics
from r1pipeline.rewards.reward_model import as_turns, score_conversations
from r1pipeline.rundir import execute_stage, input_model
from r1pipeline.tracking import tracking_callbacks
from r1pipeline.training import common_args, train_and_save
from r1pipeline.typecheck import check_fields

log = logging.getLogger(__name__)
HEADLINE = ("loss", "accuracy", "margin", "grad_norm", "step_time")


def check(cfg) -> None:
    """The stage block: RewardConfig fields, the preference source; the backbone loads in full precision (no 4-bit)."""
    from trl import RewardConfig

    check_fields(cfg.stage.trainer, RewardConfig, "stage.trainer")
    check_source(cfg.stage.preferences, "stage.preferences")
    if cfg.model.get("load_in_4bit"):
        raise ConfigError("model.load_in_4bit: stage reward_model loads its backbone in full precision (LoRA works: "
                          "model.lora.enabled=true); set model.load_in_4bit=false for this stage")


def load_backbone(model_cfg, path: str, use_cpu: bool, random_init: bool):
    """The model group's checkpoint as a sequence-classification model with one output (a new head) that knows its
    tokenizer's pad token (it scores the last non-pad token of each row); the same signature as models.load_model,
    so that the LoRA merge loads it as its base."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    kwargs = {"dtype": torch_dtype(model_cfg.dtype, use_cpu), "num_labels": 1,
              "attn_implementation": model_cfg.attn_implementation}
    if random_init:
        config = AutoConfig.from_pretrained(path, num_labels=1, **dict(model_cfg.config_overrides or {}))
        torch.manual_seed(0)
        with whole_models():  # the one-process weights of this seed, also under ZeRO-3 (models.load_model)
            model = AutoModelForSequenceClassification.from_config(config, dtype=kwargs["dtype"])
    else:
        model = AutoModelForSequenceClassification.from_pretrained(path, **kwargs)
    model.config.pad_token_id = load_tokenizer(path).pad_token_id
    return model


def conversational(rows: list[dict]) -> list[dict]:
    """Pairs as turns (a string prompt becomes a user turn, a string answer an assistant turn), TRL's explicit-prompt
    conversational format; pairs without a prompt keep it inside chosen/rejected."""
    turn = lambda x: [{"role": "assistant", "content": x}] if isinstance(x, str) else list(x)  # noqa: E731
    return [{**({"prompt": as_turns(r["prompt"])} if "prompt" in r else {}),
             "chosen": turn(r["chosen"]), "rejected": turn(r["rejected"])} for r in rows]


def pair_accuracy(model, tok, pairs: list[dict]) -> dict:
    """How often r(chosen) > r(rejected) on `pairs`, and the mean margin."""
    was_training = model.training
    model.eval()
    with gathered(model):  # every process scores all pairs with the whole model (under ZeRO-3 it holds a shard)
        chosen = score_conversations(model, tok, [p.get("prompt", []) + p["chosen"] for p in pairs])
        rejected = score_conversations(model, tok, [p.get("prompt", []) + p["rejected"] for p in pairs])
    model.train(was_training)
    margins = [c - r for c, r in zip(chosen, rejected)]
    return {"pairs": len(pairs), "accuracy": sum(m > 0 for m in margins) / len(pairs),
            "mean_margin": sum(margins) / len(pairs)}


def run_reward_model(cfg, out: Path, pairs: list[dict], model_path: str, random_init: bool) -> dict:
    from trl import RewardConfig, RewardTrainer

    t0 = time.time()
    tok = load_tokenizer(model_path)
    args = RewardConfig(**common_args(cfg, out))
    model = load_backbone(cfg.model, model_path, cfg.hardware.use_cpu, random_init)
    before = pair_accuracy(model, tok, pairs)
    log.info("reward model: %s (%.1fM params) on %d preference pairs; before training chosen > rejected on %.0f%%",
             model_path, model.num_parameters() / 1e6, len(pairs), 100 * before["accuracy"])
    # With LoRA the adapters train and the new head trains whole (SEQ_CLS: peft's modules_to_save).
    trainer = RewardTrainer(model=model, args=args, train_dataset=Dataset.from_list(pairs), processing_class=tok,
                            peft_config=peft_config(cfg.model, task_type="SEQ_CLS"))
    monitor = StageMonitor(cfg.alerts, kind="sft", history=out / "metrics.jsonl")
    cb.install(trainer, [cb.StepTimer(), *monitor.callbacks, cb.JsonlMetrics(out / "metrics.jsonl"),
                         cb.ReadableProgress(), *tracking_callbacks(cfg, out, trainer.is_world_process_zero())])
    # Its own output name: a scorer, not a causal LM that eval or a later training stage could start from.
    saved = train_and_save(trainer, tok, cfg, out, "loss.png", (model_path, random_init), load_base=load_backbone)
    outputs = {"reward_model": saved["model"], **({"adapter": saved["adapter"]} if "adapter" in saved else {})}
    after = pair_accuracy(trainer.model, tok, pairs)
    log.info("reward model: chosen > rejected on %.0f%% of its training pairs (mean margin %.3f)",
             100 * after["accuracy"], after["mean_margin"])
    metrics = summarize_metrics(out / "metrics.jsonl", lambda k: k in HEADLINE)
    metrics["pair_accuracy"] = {"before": before, "after": after}
    return {"outputs": outputs, "steps": trainer.state.global_step, "pairs": len(pairs),
            "wall_s": round(time.time() - t0, 1), "metrics": metrics, **monitor.report()}


def run(cfg) -> dict:
    """Backbone and pairs (failing before anything loads when either is missing), then training."""
    model_path, random_init = input_model(cfg, cfg.stage.inputs.model)
    pairs = conversational(load_preferences(cfg.stage.preferences))
    inputs = {"model": model_path, "preferences": cfg.stage.preferences.path or "builtin"}
    return execute_stage(cfg, inputs, lambda out: run_reward_model(cfg, out, pairs, model_path, random_init))
