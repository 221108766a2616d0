"""Launch plans: a hardware profile that needs several processes or DeepSpeed runs under `accelerate launch`.

The Hydra entry point composes and validates the config once (r1pipeline/config.py), freezes it (resolved) into the run directory as
`frozen_config.yaml`, writes the exact command to `launch.sh` and runs that script. Each rank runs
`python -m r1pipeline.worker <run dir>/frozen_config.yaml`, so every rank sees the same config and the same run
directory (nothing is composed again, no `${now:...}` is resolved twice). Each process learns its place from
accelerate (r1pipeline/processes.py), which reads what `accelerate launch` set up, never from argv.

What the plan passes on the command line comes from the hardware profile (process and machine counts, mixed
precision); what lives in the accelerate config file under launch/accelerate/ is the DeepSpeed setup. A multi-node
run directory also receives `slurm.sbatch` (r1pipeline/slurm.py), which starts launch.sh on every node of a Slurm
allocation; `hardware.launcher=slurm` submits it instead of starting machine 0 here.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from omegaconf import OmegaConf

from r1pipeline.errors import ConfigError
from r1pipeline.typecheck import flag, number

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parent.parent
FROZEN_CONFIG = "frozen_config.yaml"
LAUNCH_SCRIPT = "launch.sh"
# Multi-node values differ per machine, so launch.sh reads them from the environment when it runs.
MULTI_NODE_ARGS = [
    ("--machine_rank", "machine_rank", "${MACHINE_RANK:-0}"),
    ("--main_process_ip", "main_process_ip", "${MAIN_PROCESS_IP:?set MAIN_PROCESS_IP to the address of machine 0}"),
    ("--main_process_port", "main_process_port", "${MAIN_PROCESS_PORT:-29500}"),
]


class LaunchError(RuntimeError):
    """`accelerate launch` of a stage exited with an error (the ranks' own logs say why)."""


def needs_launch(hw) -> bool:
    """True when the profile cannot run in the Hydra process: several processes or an accelerate config."""
    return hw.num_processes > 1 or hw.get("num_machines", 1) > 1 or bool(hw.accelerate_config)


@dataclass
class LaunchPlan:
    argv: list[str]        # the command; tokens starting with "${" are expanded by the shell in launch.sh
    accelerate: dict       # the effective accelerate config: the file under launch/ with the profile's values on top
    config_file: Path | None  # None: one process, no launcher (`in_process_plan`)
    run_dir: Path
    env: dict = field(default_factory=dict)  # exported by launch.sh before the command (every rank inherits it)

    @property
    def frozen(self) -> Path:
        return self.run_dir / FROZEN_CONFIG

    @property
    def uses_deepspeed(self) -> bool:
        return self.accelerate.get("distributed_type") == "DEEPSPEED"

    def argv_line(self) -> str:
        return " ".join(f'"{t}"' if t.startswith("${") else shlex.quote(t) for t in self.argv)

    def command_line(self) -> str:
        """The command as launch.sh runs it, with the variables it exports in front."""
        return " ".join([*(f"{k}={shlex.quote(v)}" for k, v in self.env.items()), self.argv_line()])

    def script(self) -> str:
        return "\n".join([
            "#!/usr/bin/env bash",
            f"# Launches every rank of this run on one frozen config. Re-run by hand: bash {self.run_dir / LAUNCH_SCRIPT}",
            "# (multi-node: run it on each machine with MACHINE_RANK=<n> MAIN_PROCESS_IP=<machine 0's address>)",
            "set -euo pipefail",
            f"cd {shlex.quote(str(REPO_ROOT))}",
            f'export PYTHONPATH={shlex.quote(str(REPO_ROOT))}"${{PYTHONPATH:+:$PYTHONPATH}}"',
            *(f"export {k}={shlex.quote(v)}" for k, v in self.env.items()),
            f"exec {self.argv_line()}",
            "",
        ])


def check(cfg) -> None:
    """The `hardware` group's layout (whether this machine has the GPUs: config.check_devices; whether it has the
    software: `check_software`): types, processes that split over the machines, the launcher."""
    hw = cfg.hardware
    for key in ("use_cpu", "bf16", "gradient_checkpointing"):
        flag(hw[key], f"hardware.{key}")
    number(hw.num_processes, "hardware.num_processes", low=1, integer=True, example=1)
    number(hw.get("num_machines", 1), "hardware.num_machines", low=1, integer=True, example=1)
    if hw.num_processes % hw.get("num_machines", 1):
        raise ConfigError(f"hardware.num_processes: {hw.num_processes} processes do not split evenly over "
                          f"hardware.num_machines={hw.num_machines}; use a multiple of {hw.num_machines}")
    launcher = hw.get("launcher", "local")
    if launcher not in ("local", "slurm"):
        raise ConfigError(f"hardware.launcher: {launcher!r} is not a launcher; use local or slurm")
    if not needs_launch(hw):
        if launcher == "slurm":
            raise ConfigError(f"hardware.launcher: slurm starts `accelerate launch` through sbatch, and "
                              f"hardware={hw.name} runs in this process; use a launched profile "
                              f"(hardware=cpu_accelerate, 8xh100, 2x8xh100, ...)")


def check_software(cfg) -> None:
    """A launched profile's accelerate config file exists, and DeepSpeed is installed where it asks for it."""
    hw = cfg.hardware
    if not needs_launch(hw):
        return
    _, accelerate = accelerate_settings(hw)
    if accelerate.get("distributed_type") == "DEEPSPEED" and importlib.util.find_spec("deepspeed") is None:
        raise ConfigError(f"hardware={hw.name}: needs DeepSpeed, which is not installed; "
                          f"pip install 'r1pipeline[deepspeed]' (deepspeed==0.19.8)")


def accelerate_settings(hw) -> tuple[Path, dict]:
    """The accelerate config file of a launched profile and its contents: `hardware.accelerate_config`, or plain data
    parallelism (CPU: gloo) when the profile names none."""
    if not hw.accelerate_config:
        path = REPO_ROOT / "launch/accelerate" / ("cpu.yaml" if hw.use_cpu else "ddp.yaml")
    else:
        path = Path(hw.accelerate_config)
        path = path if path.is_absolute() else REPO_ROOT / path
    if not path.is_file():
        choices = sorted(p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "launch").rglob("*.yaml"))
        raise ConfigError(f"hardware.accelerate_config: {path} does not exist; use one of {choices}")
    return path, yaml.safe_load(path.read_text())


def build_plan(cfg, run_dir: Path) -> LaunchPlan:
    """The `accelerate launch` command for `cfg.hardware`, running the worker on `<run_dir>/frozen_config.yaml`."""
    hw = cfg.hardware
    num_machines = hw.get("num_machines", 1)
    config_file, accelerate = accelerate_settings(hw)
    mixed = "bf16" if hw.bf16 else "no"
    accelerate.update(num_processes=hw.num_processes, num_machines=num_machines, mixed_precision=mixed,
                      use_cpu=bool(hw.use_cpu))
    run_dir = Path(run_dir).resolve()
    argv = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file),
            "--num_processes", str(hw.num_processes), "--num_machines", str(num_machines),
            "--mixed_precision", mixed]
    deepspeed = accelerate.get("distributed_type") == "DEEPSPEED"
    env = {}
    if hw.num_processes > 1 and not deepspeed:
        # accelerate's torchrun launcher (named multi_gpu); ranks with hardware.use_cpu run on CPU over gloo
        argv.append("--multi_gpu")
    elif hw.use_cpu and deepspeed:
        # DeepSpeed on its CPU accelerator (hardware=cpu_zero3): `--cpu` would make accelerate skip its DeepSpeed
        # launcher and run plain CPU processes, so the device is chosen by DeepSpeed's variable instead (it would
        # pick the CPU by itself without a GPU; explicit, it stays the CPU on a machine that has one).
        env["DS_ACCELERATOR"] = "cpu"
    elif hw.use_cpu:
        argv.append("--cpu")
    if num_machines > 1:
        for option, key, env_ref in MULTI_NODE_ARGS:
            argv += [option, env_ref]
            accelerate[key] = env_ref
    argv += ["--module", "r1pipeline.worker", str(run_dir / FROZEN_CONFIG)]
    return LaunchPlan(argv=argv, accelerate=accelerate, config_file=config_file, run_dir=run_dir, env=env)


def in_process_plan(cfg, run_dir: Path) -> LaunchPlan:
    """The command of a one-process profile (hardware=cpu, 1xgpu), for a dry run: the worker on the frozen config in
    one process, which is what the Hydra process itself would run (no launcher, no process group)."""
    run_dir = Path(run_dir).resolve()
    return LaunchPlan(argv=[sys.executable, "-m", "r1pipeline.worker", str(run_dir / FROZEN_CONFIG)], accelerate={},
                      config_file=None, run_dir=run_dir)


def describe(cfg, plan: LaunchPlan) -> str:
    """How a plan runs, in words: processes, machines, launcher and its DeepSpeed setup."""
    hw = cfg.hardware
    if plan.config_file is None:
        return (f"hardware={hw.name}: one process, no launcher (the command runs the stage in that process, as "
                f"`python -m r1pipeline` does), on {'the CPU' if hw.use_cpu else 'a CUDA GPU'}")
    where = f"{hw.num_processes} process(es) on {hw.get('num_machines', 1)} machine(s) under `accelerate launch` " \
            f"({plan.config_file.relative_to(REPO_ROOT).as_posix()}"
    if plan.uses_deepspeed:
        ds = plan.accelerate.get("deepspeed_config", {})
        offload = [f"{what} offloaded to {ds[key]}" for what, key in (("parameters", "offload_param_device"),
                   ("optimizer state", "offload_optimizer_device")) if ds.get(key, "none") != "none"]
        where += f": DeepSpeed ZeRO-{ds.get('zero_stage')}, {', '.join(offload) or 'no offload'}"
    device = "CPU" + (" (DeepSpeed's CPU accelerator)" if plan.uses_deepspeed else "") if hw.use_cpu else "CUDA GPUs"
    return f"hardware={hw.name}: {where}), on {device}, mixed precision {'bf16' if hw.bf16 else 'no'}"


def freeze(cfg, run_dir: Path) -> Path:
    """Write the resolved config, with its absolute run directory, for the workers to read."""
    run_dir = Path(run_dir).resolve()
    frozen = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    frozen.run.dir = str(run_dir)
    if "dry_run" in frozen.run:  # what the run reads: `bash launch.sh` after a dry run runs it
        frozen.run.dry_run = False
    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(frozen, run_dir / FROZEN_CONFIG)
    return run_dir / FROZEN_CONFIG


def write_scripts(cfg, plan: LaunchPlan) -> list[Path]:
    """launch.sh, and for a multi-node profile or `hardware.launcher=slurm` also slurm.sbatch, in the run directory."""
    from r1pipeline.slurm import SBATCH_SCRIPT, sbatch_script

    hw = cfg.hardware
    launch_sh = plan.run_dir / LAUNCH_SCRIPT
    scripts = {launch_sh: plan.script()}
    if hw.get("num_machines", 1) > 1 or hw.get("launcher") == "slurm":
        scripts[plan.run_dir / SBATCH_SCRIPT] = sbatch_script(hw, cfg.stage.name, plan.run_dir, launch_sh)
    for path, text in scripts.items():
        path.write_text(text)
        path.chmod(0o755)
    return list(scripts)


def launch(cfg, plan: LaunchPlan) -> dict:
    """Freeze, write the scripts of `plan`, then run launch.sh here (machine 0 of a multi-node run), or with
    `hardware.launcher=slurm` submit slurm.sbatch; returns the stage's summary.json as the main process wrote it (or
    the submitted job). The caller has validated `cfg` (the CLI, r1pipeline/cli.py)."""
    from r1pipeline import slurm
    from r1pipeline.rundir import check_stage_dir

    submitted = cfg.hardware.get("launcher") == "slurm"
    if submitted:
        slurm.check_sbatch()
    check_stage_dir(cfg)  # refuse a used stage directory here, before any process starts
    freeze(cfg, plan.run_dir)
    scripts = write_scripts(cfg, plan)
    stage_dir = plan.run_dir / cfg.stage.name
    if submitted:
        job = slurm.submit(scripts[-1])
        log.info("submitted Slurm job %s (%s); output in %s", job, scripts[-1], plan.run_dir / f"slurm-{job}.out")
        return {"stage": cfg.stage.name, "status": "submitted", "job": job, "sbatch": str(scripts[-1])}
    log.info("launching %d process(es); command in %s", cfg.hardware.num_processes, scripts[0])
    rc = subprocess.run(["bash", str(scripts[0])], check=False).returncode
    if rc != 0:
        raise LaunchError(f"accelerate launch exited with {rc}; see {stage_dir / 'log.txt'} and the output above")
    return json.loads((stage_dir / "summary.json").read_text())
