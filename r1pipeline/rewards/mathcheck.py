"""math-verify behind a wall-clock timeout that works from any thread and any process.

math-verify bounds its own work with `signal.alarm`, which only works on the main thread of the main interpreter:
TRL may score rewards off the main thread, and data or reward workers are separate processes. So its signals are
switched off (`parsing_timeout=None`, `timeout_seconds=None`) and every check runs in one persistent helper process
per calling process instead (`python -c "...serve()"`, started on first use, ~1 s). The caller waits at most
`timeout_s` for each answer; on a hang it kills the helper, reaps it (no zombie, no leak) and starts a fresh one on
the next call. A plain subprocess (not `multiprocessing`) because daemonic workers (DataLoader, Pool) may not start
multiprocessing children, and fork after torch has started threads can deadlock. The helper exits by itself when
its stdin closes, i.e. when the calling process dies. Requests are serialized by a lock, so threads may share it.
"""
from __future__ import annotations

import atexit
import logging
import os
import pickle
import re
import select
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 120.0  # importing sympy on a loaded 2-core machine can take a while
_HEADER = struct.Struct("!I")


class MathTimeout(TimeoutError):
    pass


# ---------------------------------------------------------------- inside the helper process

# Outside the part math-verify matched, a digit that is not an exponent or index ("cm^2", "x_1") means another number.
_OTHER_NUMBER = re.compile(r"(?<![\^_{])\d")


def is_hedge(answer: str, matched: str) -> bool:
    """Whether `answer` holds a number besides the `matched` one. math-verify reads plain text by taking its last
    number ("7919, 16" -> 16, "16 or 7919" -> 7919), so a list of guesses would pass as its last guess. Undecided
    (False) when the matched text is not literally in the answer (math-verify normalized it, e.g. "1,234")."""
    if not matched or matched not in answer:
        return False
    rest = answer.replace(matched, " ", 1)
    return _OTHER_NUMBER.search(re.sub(r"\^\{[^}]*\}", " ", rest)) is not None


def equivalent(reference: str, answer: str) -> bool | None:
    """None when `reference` has no parsable math; else whether `answer` (an extracted final answer, LaTeX or
    plain, with or without `\\boxed{}`) is mathematically equivalent to it and holds one answer, not a list of
    guesses (`is_hedge`)."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    gold = parse(reference, extraction_mode="first_match", parsing_timeout=None)
    if not gold:
        return None
    config = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    pred = parse(answer, extraction_config=config, extraction_mode="first_match", parsing_timeout=None)
    if not pred or is_hedge(answer, str(pred[-1])):
        return False
    return bool(verify(gold, pred, timeout_seconds=None))


def _send(stream, obj) -> None:
    data = pickle.dumps(obj)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _recv(stream):
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return None
    return pickle.loads(stream.read(_HEADER.unpack(head)[0]))


def serve() -> None:
    """The helper's loop: read (reference, answer) requests on stdin, answer on the original stdout."""
    import logging as _logging

    _logging.disable(_logging.WARNING)  # math-verify warns once that its own timeout is off: that is the point
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything a library prints goes to stderr, never into the protocol
    sys.stdout = sys.stderr
    inp = sys.stdin.buffer
    import math_verify  # noqa: F401 - pay the import before saying ready

    _send(out, ("ready", None))
    while (req := _recv(inp)) is not None:
        try:
            _send(out, ("ok", equivalent(*req)))
        except Exception as exc:  # noqa: BLE001 - reported to the caller, which decides
            _send(out, ("error", f"{type(exc).__name__}: {exc}"))


# ---------------------------------------------------------------- in the calling process

class _Helper:
    def __init__(self):
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from r1pipeline.rewards.mathcheck import serve; serve()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, close_fds=True)
        self._read(STARTUP_TIMEOUT_S)

    def _read_exact(self, n: int, deadline: float) -> bytes:
        fd, buf = self.proc.stdout.fileno(), b""
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise MathTimeout("no answer within the timeout")
            chunk = os.read(fd, n - len(buf))
            if not chunk:
                raise RuntimeError(f"math-verify helper exited (code {self.proc.poll()})")
            buf += chunk
        return buf

    def _read(self, timeout: float):
        deadline = time.monotonic() + timeout
        size = _HEADER.unpack(self._read_exact(_HEADER.size, deadline))[0]
        return pickle.loads(self._read_exact(size, deadline))

    def ask(self, request: tuple, timeout: float):
        _send(self.proc.stdin, request)
        status, value = self._read(timeout)
        if status == "error":
            raise RuntimeError(f"math-verify: {value}")
        return value

    def close(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.close()


_helper: _Helper | None = None
_owner_pid: int | None = None
_lock = threading.Lock()


def check(reference: str, answer: str, timeout_s: float = 5.0) -> bool | None:
    """`equivalent(reference, answer)` run in the helper; raises MathTimeout after `timeout_s` (helper restarted)."""
    global _helper, _owner_pid, _lock
    if _owner_pid != os.getpid():  # a forked child inherits the parent's handle and lock state: start afresh
        _helper, _owner_pid, _lock = None, os.getpid(), threading.Lock()
    with _lock:
        if _helper is None or _helper.proc.poll() is not None:
            _helper = _Helper()
        try:
            return _helper.ask((reference, answer), timeout_s)
        except (MathTimeout, RuntimeError, OSError, EOFError, pickle.UnpicklingError) as exc:
            if isinstance(exc, MathTimeout) or _helper.proc.poll() is not None:
                log.warning("math-verify helper restarted after %s", exc)
                _helper.kill()
                _helper = None
            raise


def shutdown() -> None:
    """Stop this process's helper (also done at exit)."""
    global _helper
    with _lock:
        if _helper is not None and _owner_pid == os.getpid():
            _helper.close()
        _helper = None


def helper_pid() -> int | None:
    """The running helper's process id (for tests and diagnostics), or None."""
    return _helper.proc.pid if _helper is not None and _owner_pid == os.getpid() else None


atexit.register(shutdown)
