"""What the GRPO and SFT runners share around a TRL trainer: common arguments, and train -> save (merging a LoRA
adapter into its base, so that every training stage hands a plain model to the next). With run.resume=true training
continues from the newest complete checkpoint, its per-step logs rewound to that step (`resume_point`)."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

from omegaconf import OmegaConf

from r1pipeline.models import merge_adapter, peft_config
from r1pipeline.plots import plot_metrics
from r1pipeline.rundir import checkpoint_step, last_checkpoint, rewind_jsonl
from r1pipeline.tracking import finish_tracking

log = logging.getLogger(__name__)


def common_args(cfg, out: Path) -> dict:
    """TrainingArguments fields every stage sets the same way: hardware group, seed, run name, and `stage.trainer`."""
    hw = cfg.hardware
    return dict(
        output_dir=str(out),
        run_name=f"{Path(cfg.run.dir).name}/{cfg.stage.name}",
        report_to="none",  # trackers are added as callbacks by r1pipeline.tracking, after our own
        use_cpu=hw.use_cpu,
        bf16=hw.bf16,
        activation_checkpointing=hw.gradient_checkpointing,
        seed=cfg.seed,
        save_strategy="steps",
        disable_tqdm=False,
        **OmegaConf.to_container(cfg.stage.trainer, resolve=True),
    )


LOGS = ("metrics.jsonl", "samples.jsonl")  # per-step logs, rewound to the checkpoint a resumed run starts from


def resume_point(cfg, out: Path) -> str | None:
    """With run.resume=true: the newest complete checkpoint in `out` (None: train from the start), with the per-step
    logs rewound to its step, so the resumed run logs every later step once. Every process sees the same answer
    (the main process alone rewrites files)."""
    if not cfg.run.resume:
        return None
    resume = last_checkpoint(out)
    step = checkpoint_step(resume)
    dropped = {name: n for name in LOGS if (n := rewind_jsonl(Path(out) / name, step))}
    log.info("resuming from %s%s", resume or "the start (no complete checkpoint)",
             f"; dropped the rows logged after step {step}: {dropped}" if dropped else "")
    return resume


def train_and_save(trainer, tok, cfg, out: Path, plot_name: str, base: tuple[str, bool], load_base=None) -> dict:
    """Train (from the newest complete checkpoint with run.resume=true), close the tracker (as crashed on error),
    save the model + tokenizer to `out/model` and plot the metrics on the main process. Returns the stage's outputs.

    With LoRA the trainer saves the adapter to `out/adapter`, and `out/model` receives the base (`base`: path and
    random_init; `load_base`: how it loads, models.merge_adapter's `load`) with the adapter merged in, so the next
    stage loads a plain model, like after full fine-tuning."""
    # TRL 1.16 reads model.is_gradient_checkpointing around every generation, which transformers 5.23 deprecates:
    # one FutureWarning per held-out evaluation in the console, nothing a user can act on.
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    resume = resume_point(cfg, out)
    if resume and getattr(trainer.args, "eval_on_start", False):
        # transformers evaluates "on start" on every train() call, a resumed one too: that would log a second
        # held-out row at the checkpoint's step. The first run's step-0 row is kept in metrics.jsonl.
        trainer.args.eval_on_start = False
    try:
        trainer.train(resume_from_checkpoint=resume)
    except BaseException as exc:
        finish_tracking(cfg, error=exc)
        raise
    finish_tracking(cfg)
    model_dir, adapter_dir = Path(out) / "model", Path(out) / "adapter"
    lora = peft_config(cfg.model) is not None
    trainer.save_model(str(adapter_dir if lora else model_dir))
    if trainer.is_world_process_zero():
        if lora:
            merged = merge_adapter(cfg.model, base[0], base[1], str(adapter_dir), cfg.hardware.use_cpu, load_base)
            merged.save_pretrained(model_dir)
            tok.save_pretrained(adapter_dir)
            log.info("merged the LoRA adapter %s into %s: %s", adapter_dir, base[0], model_dir)
        tok.save_pretrained(model_dir)
        plot_metrics(Path(out) / "metrics.jsonl", Path(out) / plot_name, title=f"{cfg.stage.name} ({cfg.model.name})")
    return {"model": str(model_dir), **({"adapter": str(adapter_dir)} if lora else {})}
