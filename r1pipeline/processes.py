"""Where this process runs and how the processes of a stage work together: accelerate's `PartialState`, in one place.

Stages ask this module and never the environment: `device()` is where a model goes (the process's accelerator,
`cuda:<local rank>`, or the CPU when the hardware profile says `use_cpu`), `is_main_process()` decides who writes
files, `split()` hands each process its share of a list, `exchange()` gathers every process's results (and
failures) on every process, and `wait_for_everyone()` closes a stage. One process (hardware=cpu, 1xgpu) runs the
same code in a world of one.

The state is accelerate's and is shared with the TRL trainers (transformers re-creates it when a trainer's arguments
set up their devices), so it is looked up on every call instead of being kept.
"""
from __future__ import annotations

import contextlib

import torch
from accelerate import PartialState
from accelerate.utils import DistributedType, gather_object

from r1pipeline.errors import ConfigError


def init(hw) -> PartialState:
    """Set up the process layout for a hardware profile before a stage runs.

    Under `accelerate launch` the launcher's layout stands (the process group exists already). In a world of one the
    layout is made again from this profile, as transformers does for every trainer, so that `hardware.use_cpu` decides
    the device even when an earlier stage of this process ran with another profile."""
    state = PartialState(cpu=bool(hw.use_cpu))
    if state.distributed_type == DistributedType.NO:
        PartialState._reset_state()
        state = PartialState(cpu=bool(hw.use_cpu))
    return state


def state() -> PartialState:
    return PartialState()


def device() -> torch.device:
    """This process's device: accelerate's choice, written one way (a single process gets `cuda`, i.e. cuda:0; CPU
    processes get `cpu:0` under `accelerate launch`, which is the one CPU device)."""
    s = state()
    if s.device.type == "cpu":
        return torch.device("cpu")
    if s.device.index is not None:
        return s.device
    return torch.device(s.device.type, s.local_process_index)


def is_main_process() -> bool:
    return state().is_main_process


def process_index() -> int:
    return state().process_index


def wait_for_everyone() -> None:
    state().wait_for_everyone()


@contextlib.contextmanager
def split(items: list):
    """This process's contiguous share of `items` (uneven shares allowed; a process may get none)."""
    with state().split_between_processes(items) as mine:
        yield list(mine)


class ProcessFailed(RuntimeError):
    """Raised by `exchange` on every process at once when any process reported a failure, so that no process goes on
    waiting for one that stopped. `error` is what this process reports: its own exception if it had one, else the
    first failing process's error (a ConfigError stays a ConfigError: bad input is reported the same everywhere)."""

    def __init__(self, own: BaseException | None, failed: dict):
        self.own, self.failed = own, failed
        super().__init__(f"process {failed['process']} failed: {failed['type']}: {failed['message']}")

    @property
    def error(self) -> BaseException:
        if self.own is not None:
            return self.own
        if self.failed["config"]:
            return ConfigError(f"{self.failed['message']} (reported by process {self.failed['process']})")
        return RuntimeError(str(self))


def exchange(payload: list, error: BaseException | None = None) -> list:
    """Every process's `payload` list, concatenated in process order, on every process (accelerate's `gather_object`).

    A process that failed passes its `error` instead; then every process raises ProcessFailed. This is a collective:
    every process calls it the same number of times, which is why failures travel through it rather than around it."""
    s = state()
    described = None if error is None else {"process": s.process_index, "type": type(error).__name__,
                                            "message": str(error), "config": isinstance(error, ConfigError)}
    envelopes = gather_object([{"process": s.process_index, "error": described, "payload": payload}])
    failed = [e["error"] for e in envelopes if e["error"] is not None]
    if failed:
        raise ProcessFailed(error, failed[0])
    return [item for e in envelopes for item in e["payload"]]
