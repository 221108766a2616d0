"""Resume after kill -9: the newest complete checkpoint is taken, half-written ones are skipped, and the per-step
logs are rewound to it so that every step is logged once; sampling reads back the batches it had stored."""
from __future__ import annotations

import json
from pathlib import Path

import torch


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


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
