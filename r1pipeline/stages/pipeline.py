"""The whole R1 recipe in one run directory: each stage in `stage.order`, each in its own subdirectory.

python -m r1pipeline stage=pipeline [experiment=pipeline_smoke] [run.dir=<dir> run.resume=true]

`conf/stage/pipeline.yaml` composes every stage's config under its own key (`stage.sft1`, ...); each stage runs with a
copy of the root config whose `stage` is its own block, exactly as `stage=<name>` would compose it, so a stage
behaves the same alone and in the pipeline. Every stage's block is checked (once, in config.validate, with its field
names under stage.<name>), and every named input checked against the order, before the first one starts. With
`run.resume=true` a stage whose manifest says complete is skipped and an interrupted one continues: a training
stage from its newest complete checkpoint, a generating stage from the batches it had written (README "What a run
writes"). Under several processes every process runs the pipeline; each stage ends with all of them waiting for its
complete manifest (r1pipeline/rundir.py), and the summary records each stage's wall time, device and number of
processes.
"""
from __future__ import annotations

import copy
import logging
import time

from omegaconf import DictConfig, open_dict

from r1pipeline import processes
from r1pipeline.errors import ConfigError
from r1pipeline.rundir import is_complete, stage_dir, write_json

log = logging.getLogger(__name__)


def stage_cfg(cfg, name: str) -> DictConfig:
    """The root config with `stage` replaced by the pipeline's block for `name`."""
    sub = copy.deepcopy(cfg)
    with open_dict(sub):
        sub.stage = cfg.stage[name]
    return sub


def check(cfg) -> None:
    """Every stage of `stage.order` has a block and passes the checks `stage=<name>` would (its fields named
    stage.<name>.<field>), and every input it names is base, a stage earlier in the order, or complete in run.dir."""
    from r1pipeline.stages import check as check_stage
    from r1pipeline.stages import stage_inputs

    order = list(cfg.stage.order)
    for i, name in enumerate(order):
        if name not in cfg.stage or name in ("pipeline", "infer") or not isinstance(cfg.stage[name], DictConfig):
            raise ConfigError(f"stage.order: {name!r} has no config block under stage (have: "
                              f"{[k for k in cfg.stage if isinstance(cfg.stage[k], DictConfig)]})")
        try:
            check_stage(stage_cfg(cfg, name))
        except ConfigError as exc:
            message = str(exc)
            raise ConfigError(f"stage.{name}.{message[len('stage.'):]}" if message.startswith("stage.")
                              else f"{message} (stage {name} of the pipeline)") from None
        for field, source, _ in stage_inputs(cfg.stage[name]):
            if source != "base" and source not in order[:i] and not is_complete(cfg, source):
                raise ConfigError(f"stage.{name}.{field}: {source!r} does not run before {name} in stage.order "
                                  f"{order} and has no complete output in {cfg.run.dir}; put {source} earlier or "
                                  f"run stage {source} first")


def run(cfg) -> dict:
    from r1pipeline.stages import dispatch

    subs = {name: stage_cfg(cfg, name) for name in cfg.stage.order}

    out = stage_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    report, t0 = {}, time.time()
    for name, sub in subs.items():
        if cfg.run.resume and is_complete(sub, name):
            log.info("pipeline: %s is complete in %s; skipping", name, stage_dir(sub))
            report[name] = {"status": "skipped (complete)"}
            continue
        log.info("pipeline: running %s", name)
        t = time.time()
        result = dispatch(sub)
        report[name] = {"status": result["status"], "wall_s": round(time.time() - t, 1),
                        "outputs": result.get("outputs", {}), "device": str(processes.device()),
                        "processes": processes.state().num_processes}
        write_json(out / "summary.json", {"stage": "pipeline", "order": list(cfg.stage.order), "stages": report})
    summary = {"stage": "pipeline", "status": "complete", "order": list(cfg.stage.order), "stages": report,
               "wall_s": round(time.time() - t0, 1)}
    eval_table = stage_dir(cfg, "eval") / "results.md"
    if eval_table.is_file():
        summary["table"] = eval_table.read_text()
        log.info("pipeline done in %.0f s; eval:\n%s", summary["wall_s"], summary["table"])
    write_json(out / "summary.json", summary)
    return summary
