"""kill -9 at any moment, then run.resume=true: a real `python -m r1pipeline` on the tiny model is killed mid-step,
mid-save and mid-generation, and the resumed runs end as an uninterrupted run does: the same optimizer steps, each
step logged once with the same metrics and samples, the same weights; a generating stage samples only the batches it
had not written.

Kills at a precise point (mid-save, a given batch) come from inside the process (tests/killpoints/sitecustomize.py
sends it SIGKILL there); the mid-step kill comes from outside, as soon as the log shows step 3."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
KILLPOINTS = Path(__file__).resolve().parent / "killpoints"

GRPO = ["model=tiny_random", "tracking=none", "dataset.train_size=32", "dataset.test_size=8",
        "stage.trainer.max_steps=4", "stage.trainer.save_steps=2", "stage.trainer.per_device_train_batch_size=4",
        "stage.trainer.num_generations=4", "stage.trainer.max_completion_length=12", "stage.trainer.learning_rate=1e-2",
        "+reward.test_length.weight=1"]  # tests/killpoints: varies with the text, so a random model gets signal
# What training decides (no timing): an interrupted run must log exactly these values.
TRAINED = ("loss", "grad_norm", "learning_rate", "reward", "reward_std", "entropy", "completions/mean_length",
           "frac_reward_zero_std", "format_compliance")
SAMPLING = ["stage=rejection_sampling", "stage.inputs.model=base", "model=tiny_random", "tracking=none",
            "dataset.train_size=16", "dataset.test_size=4", "stage.num_prompts=4", "stage.samples_per_prompt=2",
            "stage.generation.batch_size=2", "stage.generation.max_new_tokens=8", "stage.filters.min_score=0",
            "stage.filters.mixed_language=false"]  # 4 prompts x 2 samples in batches of 2: 4 batches


def _start(args, run_dir, kill_at=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{KILLPOINTS}:{ROOT}",
           "R1_TEST_REWARD": "1"}
    env.pop("R1_KILL_AT", None)
    if kill_at:
        env["R1_KILL_AT"] = kill_at
    return subprocess.Popen([sys.executable, "-m", "r1pipeline", *args, f"run.dir={run_dir}"], cwd=run_dir.parent,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _run(args, run_dir, kill_at=None) -> subprocess.CompletedProcess:
    proc = _start(args, run_dir, kill_at)
    out, _ = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _steps(stage_dir: Path) -> list[dict]:
    return [r for r in _rows(stage_dir / "metrics.jsonl") if "reward" in r or "loss" in r]


def _killed(res) -> bool:
    return res.returncode == -signal.SIGKILL


@pytest.mark.slow  # four runs of ~15 s
def test_grpo_killed_mid_step_and_mid_save_resumes_to_the_uninterrupted_run(tmp_path):
    base = _run(GRPO, tmp_path / "base")
    assert base.returncode == 0, base.stdout[-3000:]
    run_dir = tmp_path / "killed"
    out = run_dir / "r1_zero"

    # 1. kill -9 from outside as soon as step 3 is logged: the process is in step 4, checkpoint-2 is the last one
    proc = _start(GRPO, run_dir)
    deadline = time.monotonic() + 300
    while not any(r["step"] >= 3 for r in _steps(out)):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0][-3000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert [r["step"] for r in _steps(out)][-1] >= 3 and (out / "checkpoint-2" / "trainer_state.json").is_file()

    # 2. resume; this time the process dies inside the save of checkpoint-4, after step 4 was logged
    res = _run([*GRPO, "run.resume=true"], run_dir, kill_at="save:4")
    assert _killed(res), res.stdout[-3000:]
    assert (out / "checkpoint-4" / "model.safetensors").is_file()
    assert not (out / "checkpoint-4" / "trainer_state.json").exists()  # half written
    assert [r["step"] for r in _steps(out)] == [1, 2, 3, 4]

    # 3. resume again: the half-written checkpoint-4 is skipped, steps 3 and 4 are trained again from checkpoint-2
    res = _run([*GRPO, "run.resume=true"], run_dir)
    assert res.returncode == 0, res.stdout[-3000:]
    log = (out / "log.txt").read_text()
    assert "checkpoint-4 is incomplete" in log and f"resuming from {out / 'checkpoint-2'}" in log
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["steps"] == 4

    want, got = _steps(tmp_path / "base" / "r1_zero"), _steps(out)
    assert [r["step"] for r in got] == [1, 2, 3, 4]  # each step logged exactly once
    assert len([r for r in _rows(out / "metrics.jsonl") if "train_runtime" in r]) == 1
    keys = [k for k in want[0] if k in TRAINED or k.startswith("rewards/") and k.endswith("/mean")]
    assert "loss" in keys and "rewards/test_length/mean" in keys
    for w, g in zip(want, got):
        assert {k: g[k] for k in keys} == pytest.approx({k: w[k] for k in keys}, rel=1e-6, abs=1e-9), w["step"]
    assert any(w["grad_norm"] > 0 for w in want)  # the steps moved the weights, so equal metrics mean something
    samples = [(s["step"], s["completion"]) for s in _rows(out / "samples.jsonl")]
    assert samples == [(s["step"], s["completion"]) for s in _rows(tmp_path / "base" / "r1_zero" / "samples.jsonl")]

    from safetensors.torch import load_file

    trained, expected = load_file(out / "model" / "model.safetensors"), load_file(
        tmp_path / "base" / "r1_zero" / "model" / "model.safetensors")
    assert trained.keys() == expected.keys() and all(torch.equal(trained[k], expected[k]) for k in expected)


@pytest.mark.slow  # three runs of ~10 s
def test_a_generating_stage_killed_mid_generation_samples_only_the_batches_it_had_not_written(tmp_path):
    base = _run(SAMPLING, tmp_path / "base")
    assert base.returncode == 0, base.stdout[-3000:]
    run_dir = tmp_path / "killed"
    out = run_dir / "rejection_sampling"

    res = _run(SAMPLING, run_dir, kill_at="batch:2")
    assert _killed(res), res.stdout[-3000:]
    written = {p.name: p.stat().st_mtime_ns for p in (out / "batches").glob("batch-*.json")}
    assert sorted(written) == ["batch-000000.json", "batch-000001.json"]
    assert not (out / "dataset.jsonl").exists()

    res = _run([*SAMPLING, "run.resume=true"], run_dir)
    assert res.returncode == 0, res.stdout[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    (share,) = manifest["metrics"]["generation"]["per_process"]
    assert (share["batches"], share["restored_batches"]) == (4, 2)  # two read back, two sampled
    assert {p.name: p.stat().st_mtime_ns for p in (out / "batches").glob("batch-*.json")
            if p.name in written} == written  # the written batches were not sampled again
    expected = tmp_path / "base" / "rejection_sampling" / "dataset.jsonl"
    assert (out / "dataset.jsonl").read_text() == expected.read_text()


# ------------------------------------------------------------------------------------------------ the parts, in process
def _checkpoint(d: Path, step: int, state=None, weights: bytes | None = b"weights") -> Path:
    ckpt = d / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    if weights is not None:
        (ckpt / "model.safetensors").write_bytes(weights)
    if state is not None:
        (ckpt / "trainer_state.json").write_text(state if isinstance(state, str) else json.dumps(state))
    return ckpt


def test_resume_takes_the_newest_complete_checkpoint_and_removes_half_written_ones(tmp_path):
    from r1pipeline.rundir import checkpoint_complete, last_checkpoint

    good = _checkpoint(tmp_path, 2, {"global_step": 2})
    half = [_checkpoint(tmp_path, 4),                                     # killed before trainer_state.json
            _checkpoint(tmp_path, 6, '{"global_step": 6, "log_hi'),       # killed while writing it
            _checkpoint(tmp_path, 8, {"global_step": 8}, weights=b""),    # weights cut short
            _checkpoint(tmp_path, 10, {"global_step": 10}, weights=None)]  # no weights at all
    sharded = _checkpoint(tmp_path, 12, {"global_step": 12}, weights=None)  # an index naming a shard not written
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": "model-1-of-2.safetensors"}}))
    assert checkpoint_complete(good) and not any(checkpoint_complete(c) for c in [*half, sharded])
    (tmp_path / "checkpoint-x").mkdir()  # not a checkpoint name: ignored
    assert last_checkpoint(tmp_path) == str(good)
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-x"]
    assert last_checkpoint(tmp_path / "missing") is None


def test_rewinding_a_step_log_keeps_each_step_up_to_the_checkpoint_once(tmp_path):
    from r1pipeline.rundir import rewind_jsonl

    path = tmp_path / "metrics.jsonl"
    rows = [{"step": s, "loss": s / 10} for s in (1, 2, 3)] + [{"step": 3, "train_runtime": 9.0}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 4, "lo')  # a line cut by the kill
    assert rewind_jsonl(path, 2) == 3
    assert _rows(path) == rows[:2]
    assert rewind_jsonl(path, 2) == 0 and rewind_jsonl(tmp_path / "none.jsonl", 2) == 0


def test_sampling_reads_back_the_batches_a_store_holds_and_samples_the_rest(tmp_path, embedded_model_dir, monkeypatch):
    from conftest import compose_cfg
    from r1pipeline import sampling
    from r1pipeline.models import load_model, load_tokenizer

    cfg = compose_cfg(["model=tiny_random", "stage=eval", "stage.generation.batch_size=2",
                       "stage.generation.max_new_tokens=5"])
    tok = load_tokenizer(str(embedded_model_dir))
    model = load_model(cfg.model, str(embedded_model_dir), True, True)
    engine = sampling.Engine("hf", model, tok, torch.device("cpu"), cfg.rollout, "tiny")
    prompts = [[{"role": "user", "content": q}] for q in ("What is 2 + 3?", "Name a colour.", "Say hello.")]
    plain = sampling.sample(engine, prompts, cfg.stage.generation, 2, 7)  # 6 sequences: batches 0, 1, 2
    store = tmp_path / "batches"
    stored = sampling.sample(engine, prompts, cfg.stage.generation, 2, 7, store=store)
    assert stored.per_prompt == plain.per_prompt and len(list(store.glob("batch-*.json"))) == 3

    (store / "batch-000001.json").unlink()  # as if the kill came before batch 1 was written
    (store / "batch-000002.json").write_text('{"key": "other run"}')  # another run's batch: not taken
    sampled = []
    run = sampling._run
    monkeypatch.setattr(sampling, "_run", lambda e, t, batches, *a: sampled.extend(b for b, _ in batches) or run(
        e, t, batches, *a))
    again = sampling.sample(engine, prompts, cfg.stage.generation, 2, 7, store=store)
    assert sampled == [1, 2] and again.per_prompt == plain.per_prompt
    assert again.stats["per_process"][0]["restored_batches"] == 1
    other = sampling.sample(engine, prompts, cfg.stage.generation, 2, 8, store=store)  # another seed: sampled anew
    assert sampled == [1, 2, 0, 1, 2] and other.per_prompt != plain.per_prompt
