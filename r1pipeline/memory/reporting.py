"""How an estimate is shown: the table the CLI logs, the one-line warning that names the fields to change, and the
preset x GPU-profile table of the README (`table`, written by `python -m r1pipeline.memory --table`)."""
from __future__ import annotations

import logging
import re
from pathlib import Path

from r1pipeline.memory.estimate import Estimate, Part, StageMemory, device, estimate

log = logging.getLogger("r1pipeline.memory")
REPO_ROOT = Path(__file__).resolve().parents[2]
TABLE_FILE = REPO_ROOT / "bench/results/memory_table.md"
README_MARKERS = ("<!-- memory-table:start -->", "<!-- memory-table:end -->")
# Within this share of the budget a fit is called tight: the estimate read 0.94-1.12 of measured peaks on CPU, and on a
# GPU the allocator, NCCL and an activation count ~13% short may add more (bench/results/memory_calibration.md).
TIGHT = 0.8


def verdict(est: Estimate) -> str:
    if not est.fits:
        return "does NOT fit"
    return "fits, tight (over 80% of it)" if est.peak.total > TIGHT * est.budget_gb else "fits"


def levers(cfg, s: StageMemory, part: Part) -> list[str]:
    """The fields that shrink `part` of stage `s`, named as on the command line."""
    at = "stage." + (s.stage.split(" ")[0] + "." if cfg.stage.name == "pipeline" else "")
    length = f"{at}trainer." + ("max_completion_length" if s.kind == "grpo" else "max_length")
    if part.kind == "activations":
        found = [f"{at}trainer.per_device_train_batch_size", length]
        return found + ([] if cfg.hardware.gradient_checkpointing else ["hardware.gradient_checkpointing=true"])
    if part.kind == "kv":
        if s.kind == "grpo":
            return [f"{at}trainer.per_device_train_batch_size", length]
        return [f"{at}generation.batch_size", f"{at}generation.max_new_tokens"]
    if part.kind == "states":
        offload = "hardware=1xgpu_offload" if cfg.hardware.num_processes == 1 else \
            "hardware.accelerate_config=launch/accelerate/zero3_offload.yaml"
        return ([] if cfg.model.lora.enabled else ["model.lora.enabled=true"]) + \
            ([] if device(cfg).offload_optimizer else [offload])
    return {"reference": [f"{at}trainer.beta=0"], "gather": [f"{at}trainer.ds3_gather_for_generation=false"],
            "vllm": ["rollout.gpu_memory_utilization"]}.get(part.kind, [])


def advice(cfg, est: Estimate) -> str:
    """One line: how far over the budget the largest stage is, its largest parts, and the fields to change."""
    s = est.peak
    working = "training" if s.phase("training") >= s.phase("rollout") else "rollout"
    live = sorted((p for p in s.parts if p.phase in ("always", working)), key=lambda p: -p.gb)
    fields = list(dict.fromkeys(f for p in live for f in levers(cfg, s, p)))
    biggest = ", ".join(f"{p.name} {p.gb:.1f}" for p in live[:3])
    return (f"memory: stage {s.stage} needs ~{s.total:.1f} GB per GPU (estimated; {biggest}), more than "
            f"hardware.gpu_memory_gb={est.budget_gb}; change {', '.join(fields) or 'hardware (a larger GPU)'}")


def format_estimate(est: Estimate) -> str:
    """The estimate as a table: every part of every stage, each stage's total, the peak against the budget."""
    where = f"per GPU, hardware={est.hardware} ({est.budget_gb} GB)" if est.budget_gb else \
        f"per process on CPU, hardware={est.hardware} (host RAM, beside the process's own ~0.55 GB)"
    assumed = " (assumed: dataset.max_prompt_tokens is unset)" if est.prompt_assumed else ""
    lines = [f"memory estimate {where}: model {est.model}, prompts of {est.prompt_tokens} tokens{assumed}"]
    total = "total: the rest + the larger of training and rollout"
    width = max(len(total), *(len(p.name) for s in est.stages for p in s.parts)) + 2
    for s in est.stages:
        lines.append(f"  {s.stage}: {s.what}")
        lines += [f"    {p.name:<{width}}{p.gb:8.2f} GB" + (f"  ({p.phase})" if p.phase != "always" else "")
                  for p in s.parts]
        host = f"; host RAM ~{s.host_gb:.1f} GB per machine (DeepSpeed)" if s.host_gb else ""
        lines.append(f"    {total:<{width}}{s.total:8.2f} GB{host}")
    against = "" if est.budget_gb is None else f" of {est.budget_gb} GB: {verdict(est)}"
    lines.append(f"  peak: {est.peak.stage}, {est.peak.total:.1f} GB{against}")
    return "\n".join(lines)


def report(cfg) -> Estimate | None:
    """Log the estimate of a GPU profile (CPU profiles: nothing) and warn, naming the fields to change, when it
    exceeds hardware.gpu_memory_gb. Never raises: an estimate must not stop a run."""
    if cfg.hardware.use_cpu or cfg.hardware.get("gpu_memory_gb") is None:
        return None
    try:
        est = estimate(cfg)
    except Exception as exc:  # noqa: BLE001 - whatever the estimate trips on, the run goes on
        log.warning("memory estimate skipped (%s: %s)", type(exc).__name__, exc)
        return None
    log.info("%s", format_estimate(est))
    if not est.fits:
        log.warning("%s", advice(cfg, est))
    return est


# ---------------------------------------------------------------------------------------------- README table
def gpu_profiles() -> list[str]:
    """The hardware options with a GPU memory budget, in conf/hardware/ order."""
    from r1pipeline.composing import compose, options

    return [h for h in options("hardware") if compose(f"hardware={h}").hardware.get("gpu_memory_gb")]


def cell(est: Estimate, pipeline: bool) -> str:
    peak = est.peak
    where = f" ({peak.stage})" if pipeline else ""
    word = verdict(est)
    return f"{peak.total:.1f}{where} " + ("**over**" if not est.fits else "tight" if "tight" in word else "fits")


def table() -> str:
    """Markdown: every preset of conf/experiment/ on every GPU profile, the estimated peak GB per GPU."""
    from r1pipeline.composing import compose, options

    profiles = gpu_profiles()
    head = [f"{h} ({compose(f'hardware={h}').hardware.gpu_memory_gb} GB)" for h in profiles]
    lines = ["| preset (model) | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for preset in options("experiment"):
        cells = []
        for h in profiles:
            cfg = compose(f"experiment={preset}", f"hardware={h}")
            cells.append(cell(estimate(cfg), cfg.stage.name == "pipeline"))
        lora = ", LoRA" if cfg.model.lora.enabled else ""
        lines.append(f"| `{preset}` ({cfg.model.name}{lora}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_table(readme: Path = REPO_ROOT / "README.md") -> Path:
    """bench/results/memory_table.md, and the same table between README's markers ("Will it fit?")."""
    import deepspeed
    import trl

    text = table()
    TABLE_FILE.write_text(
        "# Will it fit? Estimated peak memory per GPU (GB = 2^30 bytes)\n\n"
        "Generated by `python -m r1pipeline.memory --table` (r1pipeline/memory/, DeepSpeed "
        f"{deepspeed.__version__}, TRL {trl.__version__}): the largest stage of each preset on each GPU profile, "
        "estimated from the composed config; prompts of dataset.max_prompt_tokens where a preset sets it, else "
        "256 tokens. Estimates, not measurements: nothing here ran on a GPU.\n\n" + text + "\n")
    start, end = README_MARKERS
    readme_text = readme.read_text()
    if start in readme_text and end in readme_text:
        pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
        readme.write_text(pattern.sub(lambda _: f"{start}\n{text}\n{end}", readme_text))
    return TABLE_FILE
