"""One place decides where a process runs (accelerate's PartialState, r1pipeline/processes.py): the device it picks on
a GPU machine (CUDA reported available, nothing moved for real), the generating stages' model and inputs going there,
sampling that does not depend on how batches are shared out, failures that stop every process with the same error,
and the vLLM engine's calls (against a stand-in `vllm` module)."""
from __future__ import annotations

import json
import os
import sys
import types

import pytest
import torch
from accelerate import PartialState

from conftest import compose_cfg
from r1pipeline import processes
from r1pipeline.errors import ConfigError
from r1pipeline.generation import Params, batch_seed, plan_batches, render, run_batches
from r1pipeline.rundir import execute_stage
from r1pipeline.sampling import open_engine, sample
from r1pipeline.cli import run_stage


@pytest.fixture(autouse=True)
def fresh_state():
    PartialState._reset_state()
    yield
    PartialState._reset_state()


@pytest.fixture
def cuda_reported(monkeypatch):
    """A machine whose CUDA check says yes (two GPUs); nothing can really run there, so nothing may try."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)


@pytest.fixture
def second_gpu_process(cuda_reported, monkeypatch):
    """Process 1 of two started by `accelerate launch` (LOCAL_RANK=1): accelerate's own PartialState decides, with
    the process-group calls stubbed (there is no NCCL here)."""
    import torch.distributed as dist

    for key, value in {"LOCAL_RANK": "1", "RANK": "1", "WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(dist, "init_process_group", lambda *a, **k: None)
    monkeypatch.setattr(dist, "get_world_size", lambda *a: 2)
    monkeypatch.setattr(dist, "get_rank", lambda *a: 1)


def _moves(monkeypatch):
    """Record every device a module or a tokenized batch is sent to, and leave them where they are."""
    from transformers import BatchEncoding

    moved = []

    def module_to(self, *args, **kwargs):
        moved.extend(("model", a) for a in args if isinstance(a, torch.device))
        return self

    monkeypatch.setattr(torch.nn.Module, "to", module_to)
    monkeypatch.setattr(BatchEncoding, "to", lambda self, device, **kw: moved.append(("inputs", device)) or self)
    return moved


def test_the_device_is_the_local_rank_gpu_and_the_sampled_model_goes_there(second_gpu_process, monkeypatch,
                                                                          embedded_model_dir):
    cfg = compose_cfg(["model=tiny_random", "hardware=1xgpu"])
    state = processes.init(cfg.hardware)
    assert (state.num_processes, state.process_index, state.local_process_index) == (2, 1, 1)
    assert processes.device() == torch.device("cuda", 1) and not processes.is_main_process()
    moved = _moves(monkeypatch)
    with open_engine(cfg, str(embedded_model_dir), True) as engine:
        assert engine.device == torch.device("cuda", 1)
    assert moved == [("model", torch.device("cuda", 1))]


@pytest.mark.parametrize("hardware,device", [
    ("1xgpu", torch.device("cuda", 0)),   # one process on a GPU machine: the first GPU, by name
    ("cpu", torch.device("cpu")),         # hardware.use_cpu wins over a visible GPU
])
def test_one_process_follows_the_hardware_profile(cuda_reported, hardware, device):
    processes.init(compose_cfg([f"hardware={hardware}"]).hardware)
    assert processes.device() == device and processes.is_main_process()


def test_a_generating_stage_samples_on_the_decided_device(cuda_reported, monkeypatch, tmp_path, embedded_model_dir):
    """The eval stage, end to end on a machine that reports a GPU: its model and every batch of inputs are sent to
    cuda:0 (the moves are recorded, not made), and the stage records that device for its one process."""
    moved = _moves(monkeypatch)
    cfg = compose_cfg(["model=tiny_random", "hardware=1xgpu", "stage=eval", "stage.num_prompts=2", "stage.k=2",
                       "stage.generation.max_new_tokens=4", "stage.generation.batch_size=2", "dataset.train_size=8",
                       "dataset.test_size=4"], run_dir=tmp_path / "run")
    summary = run_stage(cfg)
    cuda0 = torch.device("cuda", 0)
    # the model once, then one greedy batch (2 prompts) and two sampled batches (2 prompts x 2)
    assert moved == [("model", cuda0), ("inputs", cuda0), ("inputs", cuda0), ("inputs", cuda0)]
    passes = summary["generation"]["base"]["small_sums"]
    for name, batches, sequences in (("greedy", 1, 2), ("sampled", 2, 4)):
        assert passes[name]["per_process"] == [
            {"process": 0, "device": "cuda:0", "batches": batches, "restored_batches": 0, "sequences": sequences,
             "new_tokens": passes[name]["new_tokens"], "wall_s": passes[name]["wall_s"]}], name


def test_a_batch_samples_the_same_whichever_process_draws_it(embedded_model_dir):
    """Batch b is seeded from (seed, b): the plan's batches sampled in two shares (as two processes would, in either
    order) give exactly what one process sampling them all gives."""
    from r1pipeline.models import load_model, load_tokenizer

    tok = load_tokenizer(str(embedded_model_dir))
    model = load_model(compose_cfg(["model=tiny_random"]).model, str(embedded_model_dir), True, True)
    prompts = [[{"role": "user", "content": q}] for q in ("What is 2 + 3?", "Name a colour.", "Say hello.")]
    texts = [render(tok, p) for p in prompts for _ in range(2)]
    plan, params = plan_batches(3, 2, 2), Params(max_new_tokens=6, temperature=1.0, batch_size=2)
    assert [indices for _, indices in plan] == [[0, 1], [2, 3], [4, 5]]
    one = run_batches(model, tok, texts, plan, params, 7, "cpu")
    second = run_batches(model, tok, texts, plan[2:], params, 7, "cpu")  # process 1's share, sampled first
    first = run_batches(model, tok, texts, plan[:2], params, 7, "cpu")
    assert first.indices + second.indices == one.indices == list(range(6))
    assert first.texts + second.texts == one.texts and first.num_tokens + second.num_tokens == one.num_tokens
    other_seed = run_batches(model, tok, texts, plan, params, 8, "cpu")
    assert other_seed.texts != one.texts  # sampling, not greedy: the seed decides


def test_a_failure_elsewhere_stops_this_process_with_that_error(tmp_path, monkeypatch):
    """The main process's view when process 1 fails during a stage: the stage-end exchange brings process 1's error,
    the manifest says failed with it, and the main process raises the same message (a ConfigError stays one)."""
    def with_process_1(error):
        def gather(envelopes):
            return [*envelopes, {"process": 1, "error": error, "payload": []}]
        return gather

    cfg = compose_cfg(["model=tiny_random", "stage=eval", "tracking=none"], run_dir=tmp_path / "run")
    manifest = tmp_path / "run" / "eval" / "manifest.json"
    monkeypatch.setattr(processes, "gather_object", with_process_1(
        {"process": 1, "type": "StageFailed", "message": "kept no rows", "config": True}))
    with pytest.raises(ConfigError, match=r"^kept no rows \(reported by process 1\)$"):
        execute_stage(cfg, {}, lambda out: {"outputs": {}})
    assert json.loads(manifest.read_text())["status"] == "failed"
    assert json.loads(manifest.read_text())["error"] == "ConfigError: kept no rows (reported by process 1)"

    monkeypatch.setattr(processes, "gather_object", with_process_1(
        {"process": 1, "type": "OutOfMemoryError", "message": "CUDA out of memory", "config": False}))
    with pytest.raises(RuntimeError, match=r"^process 1 failed: OutOfMemoryError: CUDA out of memory$"):
        execute_stage(compose_cfg(["model=tiny_random", "stage=eval"], run_dir=tmp_path / "run2"), {},
                      lambda out: {"outputs": {}})


@pytest.mark.parametrize("main", [True, False])
def test_a_file_every_process_reads_next_is_whole_and_in_place_when_any_process_reads_it(main, tmp_path, monkeypatch):
    """distill's traces: the main process writes them and every process trains on them next. A process goes on
    only after the barrier, and by then the main process has renamed the whole file into place (it used to write it
    with no barrier: the other process could read a missing or half-written file)."""
    from r1pipeline.rundir import share_jsonl

    rows = [{"messages": [{"role": "user", "content": f"q{i}"}], "score": i / 2} for i in range(3)]
    path = tmp_path / "dataset.jsonl"
    at_barrier = []

    def barrier():  # what every process sees there; the main process has written by then
        if not main:
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        at_barrier.append(sorted(p.name for p in tmp_path.iterdir()))

    monkeypatch.setattr(processes, "is_main_process", lambda: main)
    monkeypatch.setattr(processes, "wait_for_everyone", barrier)
    assert share_jsonl(path, rows) == path
    assert at_barrier == [["dataset.jsonl"]]  # one barrier, the file there, no temporary file left
    assert [json.loads(line) for line in path.read_text().splitlines()] == rows


def test_a_failure_here_is_reported_unchanged_and_marks_the_stage_failed(tmp_path):
    def work(out):
        raise KeyError("answer")

    with pytest.raises(KeyError, match="answer"):
        execute_stage(compose_cfg(["model=tiny_random", "stage=eval"], run_dir=tmp_path / "run"), {}, work)
    manifest = json.loads((tmp_path / "run" / "eval" / "manifest.json").read_text())
    assert (manifest["status"], manifest["error"]) == ("failed", "KeyError: 'answer'")
    assert not (tmp_path / "run" / "eval" / "summary.json").exists()


def test_vllm_engine_samples_token_ids_with_a_seed_per_sequence(monkeypatch, embedded_model_dir):
    import trl.trainer.utils  # noqa: F401 - imported before the stand-in, which TRL's import would inspect

    calls = {}

    class LLM:
        def __init__(self, **kwargs):
            calls["llm"] = kwargs

        def generate(self, prompts, params, use_tqdm=True):
            calls["prompts"], calls["params"] = prompts, params
            return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text=f"seed {p.seed}", token_ids=[5] * 3)])
                    for p in params]

    class SamplingParams:
        def __init__(self, **kwargs):
            self.__dict__.update(kwargs)

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams))
    monkeypatch.setattr(os, "environ", dict(os.environ))  # the engine exports the process layout for vLLM
    cfg = compose_cfg(["rollout=vllm", "hardware=1xgpu", "stage=eval", "stage.generation.batch_size=2"])
    prompts = [[{"role": "user", "content": "What is 2 + 3?"}], [{"role": "user", "content": "Say hi."}]]
    with open_engine(cfg, str(embedded_model_dir), False) as engine:
        sampled = sample(engine, prompts, cfg.stage.generation, 2, seed=3)
        expected_ids = [engine.tok(render(engine.tok, p), add_special_tokens=False)["input_ids"]
                        for p in prompts for _ in range(2)]
    assert {k: calls["llm"][k] for k in ("model", "tensor_parallel_size", "distributed_executor_backend",
                                         "gpu_memory_utilization", "seed")} == {
        "model": str(embedded_model_dir), "tensor_parallel_size": 1,
        "distributed_executor_backend": "external_launcher", "gpu_memory_utilization": 0.3, "seed": 0}
    assert [p["prompt_token_ids"] for p in calls["prompts"]] == expected_ids
    seeds = [batch_seed(3, i) for i in range(4)]
    assert [p.seed for p in calls["params"]] == seeds and len(set(seeds)) == 4
    assert {(p.max_tokens, p.temperature, p.top_p) for p in calls["params"]} == {(256, 0.6, 0.95)}
    assert [[s.text for s in row] for row in sampled.per_prompt] == [[f"seed {s}" for s in seeds[:2]],
                                                                      [f"seed {s}" for s in seeds[2:]]]
    assert sampled.stats["engine"] == "vllm" and sampled.stats["per_process"][0]["sequences"] == 4
