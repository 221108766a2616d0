"""The Slurm path of a launched run: an sbatch script that starts the run's launch.sh on every node of the allocation.

Every multi-node run directory (and every run with `hardware.launcher=slurm`) receives `slurm.sbatch` beside
`launch.sh`. Slurm gives the job `hardware.num_machines` nodes; `srun` starts one task per node, and each task runs
launch.sh, i.e. `accelerate launch` of the worker on the frozen config, with its machine rank from SLURM_NODEID and
the main process's address from the first node of the allocation (`scontrol show hostnames`). So Slurm places the
processes and accelerate starts them, as on machines started by hand (`MACHINE_RANK=<n> bash launch.sh`).

    sbatch <run dir>/slurm.sbatch         # or: python -m r1pipeline ... hardware.launcher=slurm (composes, submits)
"""
from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

from r1pipeline.errors import ConfigError

SBATCH_SCRIPT = "slurm.sbatch"


def sbatch_script(hw, stage: str, run_dir: Path, launch_script: Path) -> str:
    """The sbatch script for `hw` (nodes, one task per node, GPUs per node, `hardware.sbatch_options`)."""
    nodes = hw.get("num_machines", 1)
    directives = [f"--job-name=r1pipeline-{stage}", f"--nodes={nodes}", "--ntasks-per-node=1",
                  f"--output={run_dir / 'slurm-%j.out'}"]
    if not hw.use_cpu:
        directives.append(f"--gpus-per-node={hw.num_processes // nodes}")
    directives += list(hw.get("sbatch_options") or [])
    return "\n".join([
        "#!/usr/bin/env bash",
        f"# Starts this run on {nodes} node(s): one task per node runs {launch_script.name} (`accelerate launch` of",
        "# the worker on the frozen config) with its node index as machine rank. Submit: sbatch <this file>",
        *(f"#SBATCH {shlex.quote(d)}" for d in directives),
        "set -euo pipefail",
        "# Machine 0 is the allocation's first node; every node's launcher connects to it there. head closes the pipe",
        "# after one line, and under pipefail scontrol's SIGPIPE would end the job: the result is checked instead.",
        'MAIN_PROCESS_IP="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1 || true)"',
        ': "${MAIN_PROCESS_IP:?scontrol show hostnames gave no node for SLURM_JOB_NODELIST=$SLURM_JOB_NODELIST}"',
        "# A port per job, so that two jobs whose first node is the same do not collide.",
        'MAIN_PROCESS_PORT="${MAIN_PROCESS_PORT:-$((29500 + SLURM_JOB_ID % 1000))}"',
        "export MAIN_PROCESS_IP MAIN_PROCESS_PORT",
        f"srun --nodes={nodes} --ntasks-per-node=1 --kill-on-bad-exit=1 "
        f"bash -c 'MACHINE_RANK=\"$SLURM_NODEID\" exec bash \"$0\"' {shlex.quote(str(launch_script))}",
        "",
    ])


def check_sbatch() -> None:
    if shutil.which("sbatch") is None:
        raise ConfigError("hardware.launcher=slurm: sbatch is not on PATH on this machine; run the command on a "
                          "Slurm login node, or use hardware.launcher=local")


def submit(script: Path) -> str:
    """`sbatch --parsable <script>`; returns the job id."""
    res = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"sbatch {script} exited with {res.returncode}: {res.stderr.strip()}")
    return res.stdout.strip().split(";")[0]
