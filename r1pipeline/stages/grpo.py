"""The GRPO stages, R1-Zero and reasoning RL: one algorithm (TRL's GRPOTrainer), two configurations.

python -m r1pipeline stage=r1_zero [reward=...] [dataset=...] [stage.trainer.max_steps=...]
python -m r1pipeline stage=reasoning_rl run.dir=<run with sft1> [stage.inputs.model=sft1] [stage.rewards=...]

- `r1_zero` (R1 section 2.2): GRPO straight from the base model with verifiable rewards, no SFT first. Its reward
  mix is the `reward` group (so `-m reward=a,b,c` sweeps it) unless `stage.rewards` sets one.
- `reasoning_rl` (R1 section 2.3.2): GRPO from the SFT1 model with correctness (the dataset's own check), format and
  language-consistency rewards. The stage carries its own mix (`stage.rewards`, pulled from conf/reward/ by its
  defaults list), so a pipeline keeps R1-Zero's mix and this one side by side.

`run` reads top to bottom: the input model, the prompts and the columns the mix reads, the reward-hacking audit,
then the trainer (model, rewards, callbacks) and train -> save (r1pipeline/training.py).
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch

from r1pipeline import callbacks as cb
from r1pipeline.data import build_dataset, check_training_split
from r1pipeline.errors import ConfigError
from r1pipeline.models import load_model, load_tokenizer, peft_config
from r1pipeline.monitor import StageMonitor
from r1pipeline.plots import read_metrics, summarize_metrics
from r1pipeline.reward_audit import run_audit
from r1pipeline.rewards import build_rewards, validate_reward_config
from r1pipeline.rewards.format import format_compliance
from r1pipeline.rollout import grpo_rollout_args, rollout_trainer_cls
from r1pipeline.processes import is_main_process
from r1pipeline.rundir import execute_stage, input_model
from r1pipeline.tracking import tracking_callbacks
from r1pipeline.typecheck import check_fields, number
from r1pipeline.training import common_args, train_and_save

log = logging.getLogger(__name__)


def check(cfg) -> None:
    """The stage block: trainer fields of trl.GRPOConfig holding values of their types, groups of at least two
    completions that divide the generation batch, the reward mix, and a dataset with training rows."""
    from trl import GRPOConfig

    t = cfg.stage.trainer
    check_fields(t, GRPOConfig, "stage.trainer")
    g = t.get("num_generations", 8)
    if g is None or g < 2:
        raise ConfigError(f"stage.trainer.num_generations: {g} is too small; GRPO needs groups of at least 2 "
                          f"completions per prompt to compute an advantage (try 4 or 8)")
    check_generation_batch(t, cfg.hardware.num_processes)
    if t.get("max_completion_length", 1) < 1:
        raise ConfigError("stage.trainer.max_completion_length: must be at least 1")
    validate_reward_config(reward_cfg(cfg), where=reward_field(cfg))
    check_training_split(cfg.dataset, cfg.stage.name)
    check_eval(cfg)


def check_generation_batch(t, num_processes: int) -> None:
    """TRL's rule for the generation batch, with the processes of the hardware profile (GRPOConfig sees only its own
    process count when it is built): `generation_batch_size` when set, else per-device batch x processes x
    `steps_per_generation` (default: gradient_accumulation_steps); a set generation batch must be a multiple of the
    global batch (per-device x processes); either way it must hold whole groups of num_generations. Seed 002's L40S
    command (per-device 12, generation batch 24, groups of 8) passes; per-device 12 alone would not."""
    g, per_device = t.get("num_generations", 8), t.get("per_device_train_batch_size", 8)
    number(per_device, "stage.trainer.per_device_train_batch_size", low=1, integer=True, example=8)
    global_batch = per_device * num_processes
    if t.get("generation_batch_size") is not None and t.get("steps_per_generation") is not None:
        raise ConfigError("stage.trainer.generation_batch_size: set it or steps_per_generation, not both (TRL derives "
                          "one from the other)")
    if t.get("generation_batch_size") is not None:
        batch = t.generation_batch_size
        number(batch, "stage.trainer.generation_batch_size", low=1, integer=True, example=global_batch * 2)
        if batch % global_batch:
            raise ConfigError(f"stage.trainer.generation_batch_size: {batch} must be a multiple of the global batch "
                              f"({per_device} per device x {num_processes} processes = {global_batch}); set it to "
                              f"{global_batch * max(1, round(batch / global_batch))}")
        how = f"generation_batch_size={batch}"
    else:
        steps = t.get("steps_per_generation") or t.get("gradient_accumulation_steps", 1)
        batch = global_batch * steps
        how = f"{per_device} per device x {num_processes} processes x {steps} steps = {batch}"
    if batch % g:
        raise ConfigError(f"stage.trainer.per_device_train_batch_size: the generation batch ({how}) must be divisible "
                          f"by num_generations={g}; set per_device_train_batch_size to a multiple of {g}, or "
                          f"generation_batch_size to a multiple of both {g} and {global_batch}")


def evaluating(cfg) -> bool:
    """Whether the stage evaluates on held-out prompts during training (TRL's own eval loop)."""
    return cfg.stage.trainer.get("eval_strategy", "no") != "no"


def check_eval(cfg) -> None:
    """Held-out evaluation during training: `stage.trainer.eval_strategy` (no | steps | epoch, a GRPOConfig field:
    its type is checked with the others), `eval_steps` for steps, `stage.eval_prompts` a positive count (at most
    that many held-out rows are used, so the default 32 also fits a small test split), and an eval batch of whole
    groups (TRL's GRPOConfig would refuse it after the data loaded)."""
    t, n = cfg.stage.trainer, cfg.stage.get("eval_prompts")
    if not evaluating(cfg):
        return  # eval_prompts has a default (r1_zero: 32); with eval off it is simply unused
    if t.get("eval_strategy") == "steps" and not t.get("eval_steps"):
        raise ConfigError("stage.trainer.eval_steps: eval_strategy=steps needs the number of training steps between "
                          "two held-out evaluations; set stage.trainer.eval_steps=<N>, e.g. 50")
    if n is not None:
        number(n, "stage.eval_prompts", low=1, integer=True, example=100)
    g = t.get("num_generations_eval") or t.get("num_generations", 8)
    batch = t.get("per_device_eval_batch_size", 8) * cfg.hardware.num_processes
    if batch % g:
        raise ConfigError(f"stage.trainer.per_device_eval_batch_size: the eval batch ({batch} completions over "
                          f"{cfg.hardware.num_processes} processes) must hold whole groups of num_generations_eval="
                          f"{g}; set per_device_eval_batch_size to a multiple of {g} (or lower num_generations_eval)")


def eval_prompts(cfg, data):
    """The held-out prompts evaluated during training: the first `stage.eval_prompts` rows of the dataset's test split
    (at most all of it; null: all), which no training row shares (r1pipeline/data); None when the stage does not evaluate. Every dataset
    has that split (its own, one carved out of train, or other seeds); a named `dataset.test_split` that is missing
    or empty already fails when the data loads, before the model."""
    if not evaluating(cfg):
        return None
    test, n = data["test"], cfg.stage.get("eval_prompts")
    return test.select(range(min(n, len(test)))) if n else test


def grpo_args(cfg, out: Path, reward_weights: list[float]):
    from trl import GRPOConfig

    # The rollout engine's fields first, so that stage.trainer can still override any of them.
    kwargs = {**grpo_rollout_args(cfg.rollout), **common_args(cfg, out)}
    if not evaluating(cfg):
        # r1_zero's default eval_on_start would make transformers evaluate with no eval_dataset ("evaluation requires
        # an eval_dataset") when a run turns evaluation off with eval_strategy=no alone.
        kwargs["eval_on_start"] = False
    return GRPOConfig(reward_weights=reward_weights, **kwargs)


HEADLINE = ("reward", "reward_std", "completions/mean_length", "completions/clipped_ratio", "frac_reward_zero_std",
            "format_compliance", "rollout/tokens_per_s", "rollout/bound_tokens_per_s", "rollout/share_of_bound",
            "loss", "step_time")
EVAL_HEADLINE = ("eval_reward", "eval_reward_std", "eval_completions/mean_length", "eval_format_compliance")


def summarize(metrics_path: Path) -> dict:
    """First/last/min/max of the headline metrics and per-reward means and errors, for summary.json; with held-out
    evaluation during training, the same of its curve (`eval_reward`, `eval_rewards/<name>/mean`, ...) and the steps
    it ran at (`eval_at_steps`)."""
    metrics = summarize_metrics(metrics_path, lambda k: k in HEADLINE or k in EVAL_HEADLINE or (
        k.startswith(("rewards/", "eval_rewards/")) and k.endswith(("/mean", "/errors"))))
    steps = [r["step"] for r in read_metrics(metrics_path) if "eval_reward" in r]
    if steps:
        metrics["eval_at_steps"] = steps
    return metrics


def reward_cfg(cfg):
    """The stage's own reward mix (`stage.rewards`, e.g. reasoning RL in a pipeline) or else the `reward` group."""
    return cfg.stage.get("rewards") or cfg.reward


def reward_field(cfg) -> str:
    """Where `reward_cfg(cfg)` sits in the config, for messages."""
    return "stage.rewards" if cfg.stage.get("rewards") else "reward"


def prepare_data(cfg):
    """Build the prompts and check that the reward mix finds the columns it reads (before any directory or model);
    with held-out evaluation on, `eval` holds its prompts."""
    data = build_dataset(cfg.dataset, cfg.model.path)
    validate_reward_config(reward_cfg(cfg), set(data["train"].column_names), reward_field(cfg))
    return with_eval(cfg, data)


def with_eval(cfg, data):
    """`data` with its `eval` split when the stage evaluates during training (`eval_prompts`)."""
    held_out = eval_prompts(cfg, data)
    if held_out is not None:
        data["eval"] = held_out
    return data


def run_grpo(cfg, out: Path, data, model_path: str, random_init: bool, rewards=None) -> dict:
    """Train with GRPO from `model_path` on `data["train"]`, evaluating on `data["eval"]` when there is one (TRL's
    eval loop: `eval_*` metrics every eval_steps); writes model/, metrics.jsonl, samples.jsonl, rewards.png into `out`.
    `rewards(recorder) -> (funcs, weights)` builds the reward functions (default: the stage's mix; align routes
    two mixes by row kind)."""
    t0 = time.time()
    recorder = cb.SampleRecorder(cfg.run.samples_per_log, batch_metrics={"format_compliance": format_compliance})
    funcs, weights = (rewards or (lambda rec: build_rewards(reward_cfg(cfg), recorder=rec)))(recorder)
    tok = load_tokenizer(model_path)
    # The trainer config comes first: under ZeRO-3 it makes from_pretrained load the weights already partitioned.
    args = grpo_args(cfg, out, weights)
    model = load_model(cfg.model, model_path, cfg.hardware.use_cpu, random_init=random_init)
    log.info("GRPO %s: %s (%.1fM params) on %d prompts, rewards %s, rollout=%s", cfg.stage.name, model_path,
             model.num_parameters() / 1e6, len(data["train"]), {f.name: w for f, w in zip(funcs, weights)}, cfg.rollout.name)
    held_out = data.get("eval")
    if held_out is not None:
        log.info("held-out eval every %s%s: %d test prompts x %d completions", eval_schedule(args),
                 " and before training" if args.eval_on_start else "", len(held_out),
                 args.num_generations_eval or args.num_generations)
    trainer = rollout_trainer_cls()(model=model, processing_class=tok, reward_funcs=funcs,
                                    args=args, train_dataset=data["train"], eval_dataset=held_out,
                                    peft_config=peft_config(cfg.model), rollout=cfg.rollout)
    recorder.training = lambda: trainer.model.training  # samples.jsonl marks held-out samples split "test"
    monitor = StageMonitor(cfg.alerts, kind="grpo", history=out / "metrics.jsonl")  # replayed on resume
    cb.install(trainer, [cb.StepTimer(), *monitor.callbacks, cb.JsonlMetrics(out / "metrics.jsonl"),
                         cb.SamplesJsonl(recorder, out / "samples.jsonl"),
                         cb.ReadableProgress(), *tracking_callbacks(cfg, out, trainer.is_world_process_zero())])
    outputs = train_and_save(trainer, tok, cfg, out, "rewards.png", (model_path, random_init))
    peak = torch.cuda.max_memory_allocated() / 1e9 if torch.cuda.is_available() else None
    metrics = summarize(out / "metrics.jsonl")
    if held_out is not None and metrics.get("eval_at_steps"):
        log.info("%s", held_out_line(metrics, len(held_out)))
    return {"outputs": outputs, "steps": trainer.state.global_step, "peak_gpu_mem_gb": peak,
            "wall_s": round(time.time() - t0, 1), "metrics": metrics,
            "reward_errors": {f.name: f.errors for f in funcs}, **monitor.report()}


def eval_schedule(args) -> str:
    """When held-out evaluation runs, in words: `eval_steps` < 1 is a share of the run, as transformers resolves it."""
    every = args.eval_steps
    if args.eval_strategy.value != "steps":
        return "epoch"
    if every < 1:
        return (f"{math.ceil(args.max_steps * every)} steps ({every} of {args.max_steps})" if args.max_steps > 0
                else f"{every} of the run's steps")
    return f"{every:g} steps"


def held_out_line(metrics: dict, prompts: int) -> str:
    """The stage's last log line on its held-out curve, first -> last evaluation: what the run bought, in one line."""
    steps = metrics["eval_at_steps"]
    per_reward = [f"{k[len('eval_rewards/'):-len('/mean')]} {v['first']:.2f} -> {v['last']:.2f}"
                  for k, v in sorted(metrics.items()) if k.startswith("eval_rewards/") and k.endswith("/mean")]
    return (f"held-out ({prompts} test prompts, steps {steps[0]} -> {steps[-1]}): reward "
            f"{metrics['eval_reward']['first']:.3f} -> {metrics['eval_reward']['last']:.3f} | " + " | ".join(per_reward))


def audit_rewards(cfg, train) -> dict | None:
    """The reward-hacking audit (reward_audit.py) of the stage's mix on its first training rows: milliseconds, no
    model; warns naming the hack and the reward that pays for it. Rank 0 only (one warning, one record)."""
    if not is_main_process():
        return None
    return run_audit(reward_cfg(cfg), train, f"{reward_field(cfg)}.audit")


def run(cfg) -> dict:
    """A whole GRPO stage (R1-Zero, reasoning RL): input model, data, then training in the stage directory.

    Everything that can fail on bad input (named input stage, dataset columns; the config was validated before)
    fails before the stage directory is created or a model loads. The reward audit runs in the stage directory (its
    warnings land in log.txt) before the model loads, and its report goes into summary.json and the manifest
    (`metrics.reward_audit`).
    """
    model_path, random_init = input_model(cfg, cfg.stage.inputs.model)  # "run stage X first" when missing
    data = prepare_data(cfg)

    def work(out: Path) -> dict:
        audit = audit_rewards(cfg, data["train"])
        result = run_grpo(cfg, out, data, model_path, random_init)
        result["metrics"]["reward_audit"] = audit
        return result

    return execute_stage(cfg, {"model": model_path}, work)
