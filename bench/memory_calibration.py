"""Calibration of the memory estimate (r1pipeline/memory/) against measured peak memory on this CPU.

    python bench/memory_calibration.py            # every setting, each in a fresh process (~20 min on 2 cores)
    python bench/memory_calibration.py --only tiny_b4_c16

Each setting runs two real training steps (GRPO through `run_stage`, SFT through the SFT stage's trainer) in its own
process, float32 unless the setting says otherwise, with every completion forced to max_completion_length. The
weights are made resident before training (from_pretrained maps the checkpoint file and would page them in during the
first step). Each step is measured phase by phase (`PhaseMeter`): the kernel's high-water mark of resident memory
(VmHWM, reset with `echo 5 > /proc/self/clear_refs` as a phase starts) over the memory at its start, for the rollout
(generation and scoring), the training forward + backward, and the optimizer step. The second step is compared with
the estimate: its training phase starts with the weights and AdamW's states resident and nothing else, so its peak
over its start is the training working set the estimate's "activations" + "LM head" stand for; likewise the rollout.
Writes bench/results/memory_calibration.json (and its .md: `--markdown`). CPU resident memory is not GPU memory:
the .md says what this can and cannot tell about a GPU.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench/results"
GIB = 2**30
COMMON = ["tracking=none", "hardware.bf16=false", "stage.trainer.max_steps=2", "++stage.trainer.eval_strategy=no",
          "stage.trainer.save_steps=1000", "stage.trainer.logging_steps=1", "dataset.train_size=64",
          "dataset.test_size=8", "run.samples_per_log=0"]


def grpo(model: str, batch: int, completion: int, *extra: str) -> list[str]:
    # min_new_tokens: every completion runs to max_completion_length, the length the estimate assumes
    return [f"model={model}", f"stage.trainer.per_device_train_batch_size={batch}", "stage.trainer.num_generations=4",
            f"stage.trainer.max_completion_length={completion}",
            f"+stage.trainer.generation_kwargs={{min_new_tokens:{completion}}}", *extra]


SETTINGS = {  # name: (kind, overrides)
    "tiny_b4_c16": ("grpo", grpo("tiny_random", 4, 16)),
    "tiny_b8_c64": ("grpo", grpo("tiny_random", 8, 64)),
    "tiny_b16_c128": ("grpo", grpo("tiny_random", 16, 128)),
    "tiny_b16_c256": ("grpo", grpo("tiny_random", 16, 256)),
    "smollm2_b4_c32": ("grpo", grpo("smollm2_135m", 4, 32)),
    "smollm2_b8_c64": ("grpo", grpo("smollm2_135m", 8, 64)),
    "smollm2_b16_c64": ("grpo", grpo("smollm2_135m", 16, 64)),
    "smollm2_b16_c64_ckpt": ("grpo", grpo("smollm2_135m", 16, 64, "hardware.gradient_checkpointing=true")),
    "smollm2_b8_c64_beta": ("grpo", grpo("smollm2_135m", 8, 64, "stage.trainer.beta=0.04")),
    "smollm2_b16_c64_bf16": ("grpo", grpo("smollm2_135m", 16, 64, "hardware.bf16=true")),
    "smollm2_sft_b4_l256": ("sft", ["model=smollm2_135m", "stage=sft1", "stage.trainer.per_device_train_batch_size=4",
                                    "stage.trainer.max_length=256"]),
    "smollm2_sft_b8_l256": ("sft", ["model=smollm2_135m", "stage=sft1", "stage.trainer.per_device_train_batch_size=8",
                                    "stage.trainer.max_length=256"]),
}


def proc_status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def touch(*models) -> None:
    """Make every weight resident: from_pretrained maps the checkpoint's file and pages it in only when a weight is
    first read (measured: SmolLM2's 0.5 GB appear at its first forward), which would count the weights as training."""
    import torch

    with torch.no_grad():
        for model in models:
            if model is not None:
                for p in model.parameters():
                    p.sum()


class PhaseMeter:
    """The peak resident memory of each phase of each training step, and the memory at its start: the kernel's
    high-water mark (VmHWM) is reset when a phase starts (`echo 5 > /proc/self/clear_refs`) and read when it ends.
    Phases: rollout (GRPO's generation and scoring, before the loss), train (forward and backward of the loss),
    optimizer (gradient clipping and the AdamW step)."""

    def __init__(self, record: dict):
        self.steps = record.setdefault("steps", [])

    def start(self, phase: str) -> None:
        self.steps[-1][phase] = {"start": proc_status("VmRSS")}
        Path("/proc/self/clear_refs").write_text("5")

    def end(self, phase: str) -> None:
        self.steps[-1][phase]["peak"] = proc_status("VmHWM")

    def callback(self):
        from transformers import TrainerCallback

        meter = self

        class Phases(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                meter.steps.append({})
                meter.start("rollout")

            def on_pre_optimizer_step(self, args, state, control, **kw):
                meter.end("train")
                meter.start("optimizer")

            def on_optimizer_step(self, args, state, control, **kw):
                meter.end("optimizer")

        return Phases()

    def wrap_loss(self, compute_loss):
        def loss(*args, **kwargs):
            self.end("rollout")
            self.start("train")
            return compute_loss(*args, **kwargs)
        return loss


def measure_training(record: dict) -> None:
    """Wrap the trainers' `train`: weights made resident first, then every step measured phase by phase."""
    import trl

    for cls in (trl.GRPOTrainer, trl.SFTTrainer):
        def train(self, *args, _orig=cls.train, **kwargs):
            touch(self.model, getattr(self, "ref_model", None))
            record["rss_train_start"] = proc_status("VmRSS")
            meter = PhaseMeter(record)
            self.add_callback(meter.callback())
            self.compute_loss = meter.wrap_loss(self.compute_loss)
            return _orig(self, *args, **kwargs)
        cls.train = train


def sft_dataset(path: Path, rows: int = 64) -> Path:
    """Conversations whose answer is longer than any max_length here: every row is cut to exactly max_length."""
    with path.open("w") as f:
        for i in range(rows):
            answer = " ".join(f"step {j} of problem {i} adds one more number." for j in range(80))
            f.write(json.dumps({"messages": [{"role": "user", "content": f"Problem {i}: sum the numbers."},
                                             {"role": "assistant", "content": answer}]}) + "\n")
    return path


def prompt_length(cfg) -> int:
    """The longest training prompt in tokens, as GRPO renders it (its micro-batches are padded to their longest)."""
    from r1pipeline.data import build_dataset, prompt_tokens
    from r1pipeline.models import load_tokenizer, resolve_model_path

    tok = load_tokenizer(resolve_model_path(cfg.model.path))
    return max(prompt_tokens(build_dataset(cfg.dataset)["train"]["prompt"], tok))


def run_one(name: str) -> dict:
    """One setting, in this process: train, measure, estimate."""
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import compose_cfg

    from r1pipeline.models import resolve_model_path
    from r1pipeline.shapes import shape

    kind, overrides = SETTINGS[name]
    record = {"setting": name, "kind": kind, "overrides": COMMON + overrides}
    measure_training(record)
    with tempfile.TemporaryDirectory(prefix="memcal-") as tmp:
        cfg = compose_cfg(COMMON + overrides, run_dir=Path(tmp) / "run")
        t0 = time.time()
        if kind == "grpo":
            from r1pipeline.cli import run_stage

            prompt = prompt_length(cfg)
            run_stage(cfg)
            metrics = [json.loads(x) for x in (Path(tmp) / "run/r1_zero/metrics.jsonl").read_text().splitlines()]
            record["completion_mean_length"] = [m.get("completions/mean_length") for m in metrics if "loss" in m]
            record["logged_rss_gb"] = [m.get("system/rss_gb") for m in metrics if "loss" in m]
        else:
            from r1pipeline.stages.sft import run_sft

            prompt = None
            run_sft(cfg, Path(tmp) / "sft1", sft_dataset(Path(tmp) / "data.jsonl"),
                    resolve_model_path(cfg.model.path), cfg.model.random_init)
        record["wall_s"] = round(time.time() - t0, 1)
    record.update(params=shape(cfg.model).params, prompt_tokens=prompt)
    return reestimate({"results": [record]})["results"][0]


def compare(record: dict, est) -> dict:
    """Measured vs estimated. The training working set: the first step's training phase, peak over start (it starts
    with the weights resident and little else; by the second step glibc keeps freed activation memory mapped, which
    the next backward reuses without growing the resident set). The whole: the estimate's total plus the process's
    own memory (resident at the start of training, less the estimated weights) against the peak of both steps."""
    first = record["steps"][0]
    grow = {phase: (first[phase]["peak"] - first[phase]["start"]) / GIB for phase in ("rollout", "train")}
    weights = sum(p.gb for p in est.parts if p.name in ("weights", "reference model (beta > 0)")
                  or p.name.startswith("frozen base"))
    baseline = record["rss_train_start"] / GIB - weights
    peak = max(phase["peak"] for step in record["steps"] for phase in step.values()) / GIB
    return {"measured_train_gb": round(grow["train"], 3), "estimated_train_gb": round(est.phase("training"), 3),
            "ratio_train": round(est.phase("training") / grow["train"], 3),
            "measured_rollout_gb": round(grow["rollout"], 3), "estimated_rollout_gb": round(est.phase("rollout"), 3),
            "process_baseline_gb": round(baseline, 3), "measured_peak_gb": round(peak, 3),
            "estimated_peak_gb": round(est.total + baseline, 3), "ratio_peak": round((est.total + baseline) / peak, 3)}


def estimate_for(record: dict):
    """The estimate (current code) of a recorded setting: its overrides, its measured prompt length."""
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import compose_cfg

    from r1pipeline.memory import estimate

    return estimate(compose_cfg(record["overrides"]), prompt_tokens=record["prompt_tokens"]).stages[0]


def reestimate(data: dict) -> dict:
    """The saved measurements against the current estimate (after a change to r1pipeline/memory/)."""
    for record in data["results"]:
        if "steps" in record:
            est = estimate_for(record)
            record.update(what=est.what, estimate_parts_gb={p.name: round(p.gb, 4) for p in est.parts})
            record.update(compare(record, est))
    return data


def run_all(names: list[str], save) -> list[dict]:
    """Each setting in its own process; `save(results)` after each, so a failure keeps what was measured."""
    results = []
    for name in names:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--one", name]
        print(f"== {name}: {' '.join(SETTINGS[name][1])}", flush=True)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        if res.returncode != 0:
            print(f"   failed:\n{res.stderr[-3000:]}", flush=True)
            results.append({"setting": name, "failed": res.stderr[-500:]})
        else:
            results.append(json.loads(res.stdout.strip().splitlines()[-1]))
            r = results[-1]
            print(f"   training working set: estimated {r['estimated_train_gb']:.2f} GB, measured "
                  f"{r['measured_train_gb']:.2f} GB, ratio {r['ratio_train']:.2f}; peak RSS: estimated "
                  f"{r['estimated_peak_gb']:.2f}, measured {r['measured_peak_gb']:.2f} ({r['wall_s']} s)", flush=True)
        save(results)
    return results


def markdown(data: dict) -> str:
    """The table of bench/results/memory_calibration.md: every setting, estimate vs measurement."""
    rows = ["| setting | workload | training working set GB: estimated / measured (ratio) | peak RSS GB: estimated "
            "/ measured (ratio) |", "|---|---|---|---|"]
    for r in data["results"]:
        if "failed" in r:
            rows.append(f"| {r['setting']} | failed | | |")
            continue
        rows.append(f"| `{r['setting']}` | {r['what']} | {r['estimated_train_gb']:.2f} / {r['measured_train_gb']:.2f} "
                    f"({r['ratio_train']:.2f}) | {r['estimated_peak_gb']:.2f} / {r['measured_peak_gb']:.2f} "
                    f"({r['ratio_peak']:.2f}) |")
    done = [r for r in data["results"] if "ratio_train" in r]
    for key, what in (("ratio_train", "training working set"), ("ratio_peak", "peak RSS")):
        ratios = [r[key] for r in done]
        rows.append(f"\n{what}, estimate / measured: {min(ratios):.2f} to {max(ratios):.2f} over {len(ratios)} "
                    f"settings.")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child mode: one setting, JSON on the last stdout line
    parser.add_argument("--only", nargs="*", default=None, help="settings to run (default: all)")
    parser.add_argument("--markdown", action="store_true", help="print the .md table of the saved results")
    parser.add_argument("--reestimate", action="store_true",
                        help="recompute the estimates of the saved results with the current code, and save them")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one)))
        return
    saved = RESULTS / "memory_calibration.json"
    if args.reestimate:
        saved.write_text(json.dumps(reestimate(json.loads(saved.read_text())), indent=1) + "\n")
    if args.markdown or args.reestimate:
        print(markdown(json.loads(saved.read_text())))
        return
    out = RESULTS / "memory_calibration.json"
    command = "python bench/memory_calibration.py" + (" --only " + " ".join(args.only) if args.only else "")
    note = ("each setting: `python -m r1pipeline` with `overrides` (SFT: the sft1 stage's trainer on a synthetic "
            "dataset), in its own process; bytes are GB = 2^30")
    run_all(args.only or list(SETTINGS), lambda results: out.write_text(
        json.dumps({"command": command, "note": note, "results": results}, indent=1) + "\n"))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
