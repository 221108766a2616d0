"""The SFT stages, SFT1 and SFT2: supervised fine-tuning with TRL's SFTTrainer, two configurations.

python -m r1pipeline stage=sft1 run.dir=<run with cold_start> [stage.trainer.packing=true]
python -m r1pipeline stage=sft2 run.dir=<run with rejection_sampling> [stage.trainer.packing=true]

- `sft1` (R1 section 2.3.1): on the cold-start data, from the base model as in R1.
- `sft2` (R1 section 2.3.3): on the rejection-sampled reasoning data plus non-reasoning data; as in the paper it
  starts from the base model by default; `stage.inputs.model=sft1` continues from the cold-start model instead.

Loss on the assistant turn only. SmolLM2's chat template (like many) has no `{% generation %}` markers, which
`assistant_only_loss` needs, and TRL 1.16 can only patch templates it knows. So each `messages` row becomes TRL's
conversational prompt/completion format (prompt = every turn but the last, completion = the final assistant turn)
and `completion_only_loss=True` masks the prompt tokens; this works with any chat template.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from datasets import Dataset

from r1pipeline import callbacks as cb
from r1pipeline.errors import ConfigError
from r1pipeline.models import load_model, load_tokenizer, peft_config
from r1pipeline.monitor import StageMonitor
from r1pipeline.plots import summarize_metrics
from r1pipeline.rundir import execute_stage, input_model, resolve_stage_output
from r1pipeline.tracking import tracking_callbacks
from r1pipeline.typecheck import check_fields
from r1pipeline.training import common_args, train_and_save

log = logging.getLogger(__name__)
HEADLINE = ("loss", "mean_token_accuracy", "entropy", "num_tokens", "grad_norm", "step_time")


def check(cfg) -> None:
    """The stage block: trainer fields of trl.SFTConfig holding values of their types."""
    from trl import SFTConfig

    check_fields(cfg.stage.trainer, SFTConfig, "stage.trainer")
    if cfg.stage.trainer.get("assistant_only_loss"):
        raise ConfigError("stage.trainer.assistant_only_loss: not used; SFT stages train on the final assistant turn "
                          "through the prompt/completion format (completion_only_loss), which works with any chat "
                          "template; remove the field")


def prompt_completion(dataset_path: Path) -> Dataset:
    """`messages` rows -> {prompt: all turns but the last, completion: [last assistant turn]}."""
    rows = [json.loads(line) for line in Path(dataset_path).read_text().splitlines() if line.strip()]
    bad = [i for i, r in enumerate(rows) if not r.get("messages") or r["messages"][-1]["role"] != "assistant"]
    if not rows or bad:
        raise ConfigError(f"{dataset_path}: every row needs `messages` ending with an assistant turn "
                          f"({len(rows)} rows, bad rows {bad[:5]})")
    return Dataset.from_list([{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in rows])


def sft_args(cfg, out: Path):
    from trl import SFTConfig

    return SFTConfig(completion_only_loss=True, **common_args(cfg, out))


def summarize(metrics_path: Path) -> dict:
    return summarize_metrics(metrics_path, lambda k: k in HEADLINE)


def run_sft(cfg, out: Path, dataset_path: Path, model_path: str, random_init: bool) -> dict:
    """Fine-tune `model_path` on `dataset_path`; writes model/, metrics.jsonl and loss.png into `out`."""
    t0 = time.time()
    data = prompt_completion(dataset_path)
    tok = load_tokenizer(model_path)
    # The trainer config comes first: under ZeRO-3 it makes from_pretrained load the weights already partitioned.
    args = sft_args(cfg, out)
    model = load_model(cfg.model, model_path, cfg.hardware.use_cpu, random_init=random_init)
    log.info("SFT %s: %s (%.1fM params) on %d conversations from %s", cfg.stage.name, model_path,
             model.num_parameters() / 1e6, len(data), dataset_path)

    from trl import SFTTrainer

    trainer = SFTTrainer(model=model, processing_class=tok, args=args, train_dataset=data,
                         peft_config=peft_config(cfg.model))
    monitor = StageMonitor(cfg.alerts, kind="sft", history=out / "metrics.jsonl")  # replayed on resume
    cb.install(trainer, [cb.StepTimer(), *monitor.callbacks, cb.JsonlMetrics(out / "metrics.jsonl"),
                         cb.ReadableProgress(), *tracking_callbacks(cfg, out, trainer.is_world_process_zero())])
    outputs = train_and_save(trainer, tok, cfg, out, "loss.png", (model_path, random_init))
    return {"outputs": outputs, "steps": trainer.state.global_step, "examples": len(data),
            "wall_s": round(time.time() - t0, 1), "metrics": summarize(out / "metrics.jsonl"), **monitor.report()}


def run(cfg) -> dict:
    """A whole SFT stage (SFT1, SFT2): the named dataset and start model, then training."""
    dataset = resolve_stage_output(cfg, cfg.stage.inputs.dataset, "dataset", "inputs.dataset")
    model_path, random_init = input_model(cfg, cfg.stage.inputs.model)
    inputs = {"model": model_path, "dataset": str(dataset)}
    return execute_stage(cfg, inputs, lambda out: run_sft(cfg, out, dataset, model_path, random_init))
