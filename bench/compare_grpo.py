"""Side-by-side GRPO benchmark: the plain TRL reference script vs. r1pipeline's r1_zero stage, same workload.

Usage (GPU, the issue's workload: 8 prompts x 8 generations, <=256 new tokens, embedded SmolLM2):
    python bench/compare_grpo.py --steps 12                       # reference, then rollout=hf and rollout=static
    python bench/compare_grpo.py --steps 12 --variants hf,static,vllm   # vllm needs `pip install vllm`
CPU (tiny, what CI runs to keep the harness working; its numbers mean nothing):
    python bench/compare_grpo.py --model-dir DIR --steps 2 --batch 8 --max-len 16 --variants hf --out /tmp/bench

Every run is a subprocess of this script, one after the other on the same machine; peak memory is the GPU's
max allocated (reported by each run) or, on CPU, the process's max resident set (from os.wait4). Each project run
uses one `rollout` engine (conf/rollout/) on `--dataset countdown_reference`: the reference's prompt and task shape,
so the columns compare engines, not prompts. "rollout tokens/s" is defined as the reference defines it (completion
tokens per step / step time); the project's runs also report generation-only tokens/s and the memory-bandwidth bound.
Prints a markdown table with ratios (project / reference) and writes it with the raw JSON to --out.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(cmd: list[str], log: Path, env: dict) -> tuple[int, float, float]:
    """Run cmd, return (exit code, wall seconds, max RSS in GB)."""
    t0 = time.time()
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.time() - t0, usage.ru_maxrss / 1e6  # ru_maxrss is in KB on Linux


def _median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else float("nan")


def reference(args, out: Path, env) -> dict:
    res_json = out / "reference.json"
    code, wall, rss = _run([sys.executable, str(ROOT / "bench" / "reference_trl_grpo.py"), args.model_dir,
                            str(res_json), str(args.steps), "hf", str(args.batch), str(args.max_len)],
                           out / "reference.log", env)
    if code:
        raise SystemExit(f"reference run failed (exit {code}); see {out / 'reference.log'}")
    r = json.loads(res_json.read_text())
    return {"median_step_s": r["median_step_s"], "rollout_tok_per_s": r["rollout_tok_per_s_median"],
            "peak_mem_gb": r["peak_mem_gb"] or rss, "wall_s": wall, "reward_curves": {
                "format": r["format"], "countdown": r["equation"], "mean_len": r["mean_len"]}}


def project(args, out: Path, env, variant: str) -> dict:
    run_dir = out / f"project_{variant}"
    hardware = "1xgpu" if args.gpu else "cpu"
    cmd = [sys.executable, "-m", "r1pipeline", f"hardware={hardware}", f"rollout={variant}", "tracking=none",
           f"dataset={args.dataset}",
           f"model.path={args.model_dir}",
           f"run.dir={run_dir}", f"stage.trainer.max_steps={args.steps}",
           f"stage.trainer.per_device_train_batch_size={args.batch}", "stage.trainer.num_generations=8"
           if args.batch % 8 == 0 else f"stage.trainer.num_generations={args.batch}",
           f"stage.trainer.max_completion_length={args.max_len}", "stage.trainer.save_steps=100000",
           "stage.trainer.eval_strategy=no",  # like for like: the reference does not evaluate held-out prompts
           # like for like: the reference trains in float32 on CPU (bf16 only on CUDA)
           *([] if args.gpu else ["hardware.bf16=false"]),
           *args.overrides]
    code, wall, rss = _run(cmd, out / f"project_{variant}.log", env)
    if code:
        raise SystemExit(f"project run (rollout={variant}) failed (exit {code}); see {out / f'project_{variant}.log'}")
    rows = [json.loads(x) for x in (run_dir / "r1_zero" / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "reward" in r]
    summary = json.loads((run_dir / "r1_zero" / "summary.json").read_text())

    def median_after_warmup(values):  # steps after the first two (warm-up, compilation), as the reference does
        return _median(values[2:] or values or [0.0])

    return {"median_step_s": median_after_warmup([r["step_time"] for r in rows]),
            "rollout_tok_per_s": median_after_warmup([r["completions/mean_length"] * args.batch / r["step_time"]
                                                      for r in rows]),
            "generation_tok_per_s": median_after_warmup([r.get("rollout/tokens_per_s", 0.0) for r in rows]),
            "bound_tok_per_s": median_after_warmup([r.get("rollout/bound_tokens_per_s", 0.0) for r in rows]),
            "peak_mem_gb": summary.get("peak_gpu_mem_gb") or rss, "wall_s": wall, "reward_curves": {
                "format": [r.get("rewards/format/mean") for r in rows],
                "countdown": [r.get("rewards/correct/mean", r.get("rewards/countdown/mean")) for r in rows],
                "mean_len": [r.get("completions/mean_length") for r in rows]}}


def _curve(xs) -> str:
    return " ".join("-" if x is None else f"{x:.2f}" for x in xs)


def table(ref: dict, ours: dict[str, dict]) -> str:
    """One column per run; each project cell carries its ratio to the reference (>1x = better than the reference)."""
    head = ["metric", "reference (plain TRL)", *(f"r1pipeline rollout={v}" for v in ours)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, better in (("median_step_s", "lower"), ("rollout_tok_per_s", "higher"), ("peak_mem_gb", "lower"),
                        ("wall_s", "lower")):
        cells = [f"{ref[key]:.3g}"]
        for run in ours.values():
            a, b = ref[key], run[key]
            ratio = (a / b if better == "lower" else b / a) if a and b else float("nan")
            cells.append(f"{b:.3g} ({ratio:.2f}x)")
        lines.append(f"| {key} ({better} is better) | " + " | ".join(cells) + " |")
    for key in ("generation_tok_per_s", "bound_tok_per_s"):
        lines.append(f"| {key} | - | " + " | ".join(f"{r[key]:.4g}" for r in ours.values()) + " |")
    for name in ("format", "countdown", "mean_len"):
        lines.append(f"| {name} per step | {_curve(ref['reward_curves'][name])} | "
                     + " | ".join(_curve(r["reward_curves"][name]) for r in ours.values()) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", default=None, help="transformers checkpoint (default: the embedded SmolLM2)")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch", type=int, default=64, help="completions per step (8 generations per prompt)")
    ap.add_argument("--max-len", type=int, default=256)
    ap.add_argument("--out", default=str(ROOT / "outputs" / "bench" / time.strftime("%Y-%m-%d_%H-%M-%S")))
    ap.add_argument("--gpu", action="store_true", default=None, help="default: whether CUDA is available")
    ap.add_argument("--dataset", default="countdown_reference",
                    help="the project's dataset group; countdown_reference = the reference's prompt and task shape, "
                         "countdown = the project's default (a ~2x longer prompt with a worked example)")
    ap.add_argument("--variants", default=None,
                    help="comma-separated rollout engines to run (conf/rollout/); default: hf,static on GPU, hf on CPU")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for the project runs")
    args = ap.parse_args(argv)
    if args.gpu is None:
        import torch

        args.gpu = torch.cuda.is_available()
    variants = (args.variants or ("hf,static" if args.gpu else "hf")).split(",")
    engines = sorted(p.stem for p in (ROOT / "conf" / "rollout").glob("*.yaml"))
    unknown = [v for v in variants if v not in engines]
    if unknown:  # before the reference's minutes, not after
        ap.error(f"--variants: {', '.join(unknown)} not in conf/rollout/ ({', '.join(engines)})")
    if args.model_dir is None:
        from r1pipeline.models import materialize_embedded

        args.model_dir = str(materialize_embedded("SmolLM2-135M-Instruct"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    ref = reference(args, out, env)
    ours = {v: project(args, out, env, v) for v in variants}
    text = table(ref, ours)
    (out / "table.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps({"args": vars(args), "reference": ref, "project": ours}, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
