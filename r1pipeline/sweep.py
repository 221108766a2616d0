"""Multirun sweeps: each job records its status; at the end one table compares the jobs.

`python -m r1pipeline -m stage=r1_zero reward=r1_zero,countdown` runs every job in its own directory under
`outputs/multirun/<date>/<time with microseconds>/<num>_<overrides>`. The CLI catches a job's failure and writes
`job.json` (status, overrides, error) so the other jobs go on; `SweepSummary` (a Hydra callback configured in
conf/config.yaml) reads every job's `job.json`, its stage's `summary.json` and, where the job evaluated (`stage=eval`,
or a pipeline ending with eval), `eval/summary.json`, and writes `summary.md` and `summary.csv` in the sweep
directory, prints the table, and exits non-zero when a job failed.
"""
from __future__ import annotations

import csv
import json
import logging
import sys
from pathlib import Path

import yaml
from hydra.experimental.callback import Callback

log = logging.getLogger(__name__)
JOB_STATUS = "job.json"
FIXED_COLUMNS = ["job", "overrides", "status", "reward", "format_compliance"]
TAIL_COLUMNS = ["eval_score", "eval_score_free", "steps", "wall_s", "error"]


def short_dirname(override_dirname: str, limit: int = 120) -> str:
    """Hydra's `override_dirname`, cut to `limit` characters: file names stop at 255 bytes, and the job number in
    front keeps cut names unique. The full overrides are in each job's job.json and the summary table."""
    return override_dirname if len(override_dirname) <= limit else override_dirname[:limit] + "..."


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes in bfloat16 natively (x86 `avx512_bf16` or `amx_bf16`, Linux /proc/cpuinfo): there
    bf16 autocast roughly halves a training step (README "Performance"); elsewhere it would be emulated, slower."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


def register_resolvers() -> None:
    """`${r1.short_dirname:...}` (hydra.sweep.subdir in conf/config.yaml) and `${r1.native_bf16:}` (conf/hardware/
    cpu.yaml). Registered when r1pipeline is imported, so every composition (CLI, tests, notebooks) resolves them."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("r1.short_dirname"):
        OmegaConf.register_new_resolver("r1.short_dirname", short_dirname)
    if not OmegaConf.has_resolver("r1.native_bf16"):
        OmegaConf.register_new_resolver("r1.native_bf16", cpu_has_native_bf16)


def write_job_status(job_dir: Path, cfg, status: str, error: str | None = None) -> None:
    """Called by the CLI at the end of each multirun job, whether it finished or failed."""
    from hydra.core.hydra_config import HydraConfig

    record = {"status": status, "stage": cfg.stage.name, "overrides": list(HydraConfig.get().overrides.task),
              "run_dir": str(cfg.run.dir), "error": error}
    Path(job_dir).mkdir(parents=True, exist_ok=True)
    (Path(job_dir) / JOB_STATUS).write_text(json.dumps(record, indent=2))


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _run_dir(job: dict, job_dir: Path) -> Path:
    return Path(job.get("run_dir") or job_dir)


def _stage_summary(job: dict, job_dir: Path) -> dict:
    run_dir = _run_dir(job, job_dir)
    for path in (run_dir / str(job.get("stage")) / "summary.json", run_dir / "summary.json"):
        if path.is_file():
            return _read_json(path)
    return {}


def eval_scores(job: dict, job_dir: Path) -> dict:
    """The job's eval score, strict and format-free: what its eval stage wrote into its summary (`eval_score`,
    `eval_score_free`: the last model's pass@1 on the first benchmark), whether the job ran `stage=eval` or a
    pipeline that ends with eval. Blank for a job without an eval."""
    summary = _read_json(_run_dir(job, job_dir) / "eval" / "summary.json")
    return {"eval_score": summary.get("eval_score"), "eval_score_free": summary.get("eval_score_free")}


def job_row(job_dir: Path) -> dict:
    """One table row: the job's overrides, status and final metrics (last logged value of each)."""
    job = _read_json(job_dir / JOB_STATUS)
    if not job.get("overrides") and (job_dir / ".hydra" / "overrides.yaml").is_file():
        job["overrides"] = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()) or []
    summary = _stage_summary(job, job_dir)
    metrics = summary.get("metrics", {})

    def last(key):
        return metrics.get(key, {}).get("last")

    # the stage's own format_compliance metric where it logs one, else the format reward's mean (0/1 per sample)
    fmt = "format_compliance" if "format_compliance" in metrics else "rewards/format/mean"

    row = {"job": job_dir.name.split("_", 1)[0], "overrides": list(job.get("overrides", [])),
           "status": job.get("status", "unknown (no job.json: killed?)"), "reward": last("reward"),
           "format_compliance": last(fmt), **eval_scores(job, job_dir),
           "steps": summary.get("steps"), "wall_s": summary.get("wall_s"), "error": job.get("error") or ""}
    for key in metrics:
        if key.startswith("rewards/") and key.endswith("/mean"):
            row[f"reward/{key.split('/')[1]}"] = last(key)
    return row


def _job_dirs(sweep_dir: Path) -> list[Path]:
    dirs = [d for d in Path(sweep_dir).iterdir() if d.is_dir() and (d / ".hydra").is_dir()]
    return sorted(dirs, key=lambda d: int(d.name.split("_", 1)[0]) if d.name.split("_", 1)[0].isdigit() else 1 << 30)


def collect(sweep_dir: Path) -> tuple[list[str], list[dict], list[str]]:
    """Columns, one row per job, and the overrides common to every job (left out of each row's `overrides`)."""
    rows = [job_row(d) for d in _job_dirs(sweep_dir)]
    common = [o for o in rows[0]["overrides"] if all(o in r["overrides"] for r in rows)] if len(rows) > 1 else []
    for r in rows:
        r["overrides"] = " ".join(o for o in r["overrides"] if o not in common)
    per_reward = sorted({k for r in rows for k in r if k.startswith("reward/")})
    return FIXED_COLUMNS + per_reward + TAIL_COLUMNS, rows, common


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(columns: list[str], rows: list[dict]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_summary(sweep_dir: Path) -> tuple[str, list[dict]]:
    """Write summary.md and summary.csv into the sweep directory; return the markdown and the rows."""
    columns, rows, common = collect(sweep_dir)
    md = markdown_table(columns, rows)
    if common:
        md = f"Common to all jobs: {' '.join(common)}\n\n{md}"
    (Path(sweep_dir) / "summary.md").write_text(md)
    with (Path(sweep_dir) / "summary.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({c: r.get(c) for c in columns} for r in rows)
    return md, rows


class SweepSummary(Callback):
    """Hydra callback: after the last job of a multirun, the summary table (sweep dir + stdout)."""

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        md, rows = write_summary(sweep_dir)
        # The table is this command's result: it goes to stdout, like the summary a user asked for.
        sys.stdout.write(f"\nSweep summary ({sweep_dir}/summary.md, summary.csv):\n{md}")
        sys.stdout.flush()
        failed = [r["job"] for r in rows if r["status"] != "complete"]
        if failed:
            log.error("%d of %d jobs failed (jobs %s); see the error column and each job's job.json",
                      len(failed), len(rows), ", ".join(failed))
            raise SystemExit(1)
