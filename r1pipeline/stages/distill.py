"""Distillation (R1 section 2.4): a teacher's verified traces teach a smaller student by SFT.

python -m r1pipeline stage=distill run.dir=<run with sft2> [stage.teacher=<dir or hub id>] [model@stage.student=NAME]

The teacher is `stage.inputs.model` (base or any stage of the run) or `stage.teacher` (a local checkpoint or hub
id). It samples `samples_per_prompt` answers to `num_prompts` training prompts through r1pipeline/sampling.py
(batched, each batch written to `batches/` for resume); the answers the dataset's check verifies become
`dataset.jsonl` (`messages` with provenance). The student, `stage.student` (a model config of its own, e.g.
`model@stage.student=qwen2.5_1.5b`), is fine-tuned on them with TRL's SFTTrainer exactly as the SFT stages do
(r1pipeline/stages/sft.py). The stage's model is the student's: `stage=eval` then scores teacher and student side by
side (the teacher as its stage, or as `base` with `model.path=<teacher>`).
"""
from __future__ import annotations

import copy
import logging

from omegaconf import open_dict

from r1pipeline import sampling
from r1pipeline.data import build_dataset, draw_prompts
from r1pipeline.errors import ConfigError
from r1pipeline.models import check as check_model
from r1pipeline.models import check_model_path, resolve_model_path
from r1pipeline.rundir import StageFailed, execute_stage, input_model, share_jsonl
from r1pipeline.sampling import open_engine, sample, sft_row
from r1pipeline.stages import sft
from r1pipeline.typecheck import number
from r1pipeline.verify import Verifier, check_verifier

log = logging.getLogger(__name__)


def check(cfg) -> None:
    """Sizes, the check, generation, the student's model block and SFT fields, a teacher path that can load."""
    stage = cfg.stage
    sampling.check_training_draw(cfg)
    number(stage.min_score, "stage.min_score", example=1.0)
    if stage.teacher:
        check_model_path(stage.teacher)
    try:  # the model group's checks, named as the student's fields
        check_model(stage.student, cfg.hardware.use_cpu)
        check_model_path(stage.student.path)
    except ConfigError as exc:
        message = str(exc)
        raise ConfigError(f"stage.student.{message[len('model.'):]}" if message.startswith("model.")
                          else f"stage.student: {message}") from None
    sft.check(cfg)


def teacher(cfg) -> tuple[str, bool, str]:
    """(path, random_init, name for provenance) of the teacher."""
    if cfg.stage.teacher:
        return resolve_model_path(cfg.stage.teacher), False, str(cfg.stage.teacher)
    path, random_init = input_model(cfg, cfg.stage.inputs.model)
    return path, random_init, cfg.stage.inputs.model


def student_cfg(cfg):
    """The run's config with the student as its model group: what the SFT runner trains and saves."""
    sub = copy.deepcopy(cfg)
    with open_dict(sub):
        sub.model = cfg.stage.student
    return sub


def traces(cfg, out, data, path: str, random_init: bool, name: str) -> tuple[list[dict], dict]:
    """The teacher's verified answers as SFT rows, and what was sampled and kept."""
    stage = cfg.stage
    with open_engine(cfg, path, random_init) as engine:
        sampled = sample(engine, [r["prompt"] for r in data], stage.generation, stage.samples_per_prompt, cfg.seed,
                         list(data), Verifier(stage.verify), out / "batches")
    rows = [sft_row(row, s.response, "distill", name, s.score) for row, samples in zip(data, sampled.per_prompt)
            for s in samples if s.score is not None and s.score >= stage.min_score]
    total = len(data) * stage.samples_per_prompt
    return rows, {"samples": total, "kept": len(rows), "teacher_pass_rate": len(rows) / total,
                  "generation": sampled.stats}


def run(cfg) -> dict:
    stage = cfg.stage
    t_path, t_random, t_name = teacher(cfg)  # fails early: "run stage X first"
    s_path, s_random = resolve_model_path(stage.student.path), bool(stage.student.random_init)
    data = draw_prompts(build_dataset(cfg.dataset, cfg.model.path)["train"], stage.num_prompts, cfg.seed, stage.name)
    check_verifier(stage.verify, set(data.column_names))

    def work(out):
        rows, kept = traces(cfg, out, data, t_path, t_random, t_name)
        log.info("distill: the teacher %s passed %d of %d samples", t_name, kept["kept"], kept["samples"])
        if not rows:
            raise StageFailed(f"stage distill: the teacher passed no sample ({kept['samples']} sampled); sample more "
                              f"(stage.num_prompts, stage.samples_per_prompt) or lower stage.min_score", kept)
        dataset = share_jsonl(out / "dataset.jsonl", rows)  # every process trains on it next
        result = sft.run_sft(student_cfg(cfg), out, dataset, s_path, s_random)
        result["outputs"]["dataset"] = str(dataset)
        result["metrics"]["traces"] = kept
        return result

    return execute_stage(cfg, {"teacher": t_path, "student": s_path, "dataset": cfg.dataset.name}, work)
