"""Run untrusted Python in a confined subprocess and read back plain values; the parent side of the code sandbox.

One run = one fresh temporary directory, one `python -I -S -B sandbox_child.py job.json` started in a new session with
a scrubbed environment, a wall-clock deadline, and afterwards SIGKILL to the whole process group (while its leader is
still unreaped, so the group id cannot have been reused) and removal of the directory. What the child confines inside
itself (namespaces, rlimits, privileges, Landlock, audit hook) is described in `sandbox_child.py`; which of those
layers the kernel granted is reported back in `Outcome.layers`.

The child's output is never trusted as a verdict: it only carries the values of the expressions the parent asked for,
and the parent compares them (see `asserts.py`). Output is read from files, at most `READ_LIMIT` bytes, so a program
that prints without end costs disk up to its file-size limit and no parent memory.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from r1pipeline.errors import ConfigError
from r1pipeline.rewards.sandbox_child import RESULT_MARK, VIOLATION_EXIT

CHILD = str(Path(__file__).with_name("sandbox_child.py"))
READ_LIMIT = 1 << 20  # bytes of the child's stdout read back (the result line is its last line)
SYSTEM_LIBS = ("/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/share/zoneinfo")


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one program run may use. `processes` is RLIMIT_NPROC: per sandbox inside a user namespace, otherwise
    per user id (as root the sandbox runs as `nobody`, so concurrent sandboxes share it)."""

    timeout_s: float = 10.0  # wall clock, whole run (start-up ~0.05 s included)
    cpu_s: int = 5  # RLIMIT_CPU (SIGXCPU, then SIGKILL one second later)
    memory_mb: int = 512  # RLIMIT_AS
    processes: int = 16  # RLIMIT_NPROC
    open_files: int = 64  # RLIMIT_NOFILE
    file_kb: int = 1024  # RLIMIT_FSIZE: any file the program writes, its stdout and stderr included

    def check(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ConfigError(f"{f.name} must be a number > 0, got {value!r}")


@dataclasses.dataclass
class Outcome:
    """`values`: one {"value": repr} or {"error": message} per candidate, or None when the run produced no result.
    `error`: None, or why the sandbox stopped the program: timeout, cpu, killed (CPU hard limit or the OOM
    killer), memory, output, violation, exit, crash."""

    values: list | None
    error: str | None = None
    detail: str = ""
    program_error: str | None = None
    layers: dict = dataclasses.field(default_factory=dict)
    wall_s: float = 0.0


def read_paths() -> list[str]:
    """Directories the program may read (and execute from): the interpreter's standard library and system libraries."""
    paths = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib")} | {sys.base_prefix} | set(SYSTEM_LIBS)
    return sorted(p for p in paths if os.path.isdir(p))


def scrubbed_env(work: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": work, "TMPDIR": work, "LANG": "C.UTF-8"}


def run_program(program: str, setup: str, candidates: list[dict], limits: Limits, tripwires: bool = True) -> Outcome:
    """Run `program`, then `setup`, then evaluate each candidate ({"expr", "user", "materialize"}) in one sandbox."""
    t0 = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="r1-sandbox-"))
    try:
        work = root / "work"
        work.mkdir(mode=0o700)
        job = {"program": program, "setup": setup, "candidates": candidates, "limits": dataclasses.asdict(limits),
               "work": str(work), "read_paths": read_paths(), "tripwires": tripwires}
        (root / "job.json").write_text(json.dumps(job))
        with open(root / "stdout", "wb") as out, open(root / "stderr", "wb") as err:
            proc = subprocess.Popen([sys.executable, "-I", "-S", "-B", CHILD, str(root / "job.json")],
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=work,
                                    env=scrubbed_env(str(work)), start_new_session=True, close_fds=True)
            timed_out = _wait_then_kill_group(proc, limits.timeout_s)
        outcome = _outcome(proc.returncode, timed_out, _tail(root / "stdout", READ_LIMIT), _tail(root / "stderr", 2000))
    finally:
        _remove(root)
    outcome.wall_s = time.monotonic() - t0
    return outcome


def run_many(jobs: list[tuple[str, str, list[dict]]], limits: Limits, workers: int, tripwires: bool = True):
    """`run_program` for each (program, setup, candidates), at most `workers` at a time; outcomes in order."""
    if not jobs:
        return []
    with ThreadPoolExecutor(max_workers=min(workers, len(jobs)), thread_name_prefix="sandbox") as pool:
        return list(pool.map(lambda j: run_program(*j, limits=limits, tripwires=tripwires), jobs))


def _wait_then_kill_group(proc: subprocess.Popen, timeout_s: float) -> bool:
    """Wait for the child to exit (without reaping it) or for the deadline; then SIGKILL its process group and reap.
    Returns whether the deadline was hit."""
    deadline, pause, timed_out = time.monotonic() + timeout_s, 0.005, False
    while os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        if time.monotonic() >= deadline:
            timed_out = True
            break
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    return timed_out


def _outcome(code: int, timed_out: bool, stdout: bytes, stderr: bytes) -> Outcome:
    detail = stderr.decode(errors="replace").strip()[-500:]
    if timed_out:
        return Outcome(None, "timeout", detail)
    signals = {signal.SIGXCPU: "cpu", signal.SIGKILL: "killed", signal.SIGXFSZ: "output"}
    signals = {**{128 + s: e for s, e in signals.items()}, **{-s: e for s, e in signals.items()}}  # relayed / direct
    if code == VIOLATION_EXIT:
        return Outcome(None, "violation", detail)
    if code in signals:
        return Outcome(None, signals[code], detail)
    line = next((ln for ln in reversed(stdout.split(b"\n")) if ln.startswith(RESULT_MARK.encode())), None)
    try:
        result = json.loads(line[len(RESULT_MARK):]) if line is not None else None
    except ValueError:
        result = None
    if code != 0 or not isinstance(result, dict) or not isinstance(result.get("values"), list):
        return Outcome(None, "exit" if code == 0 else "crash", f"exit code {code} without a result; {detail}")
    status = result.get("status")
    if status != "ok":
        return Outcome(None, status if status in ("memory", "exit") else "crash", detail)
    return Outcome(result["values"], None, detail, result.get("program_error"), result.get("layers") or {})


def _tail(path: Path, limit: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(max(0, f.seek(0, os.SEEK_END) - limit))
        return f.read(limit)


def _remove(root: Path) -> None:
    def make_writable_and_retry(func, path, _exc):
        os.chmod(os.path.dirname(path), stat.S_IRWXU)
        if os.path.isdir(path) and not os.path.islink(path):
            os.chmod(path, stat.S_IRWXU)
        func(path)

    shutil.rmtree(root, onerror=make_writable_and_retry)
