"""Resume after kill -9: the newest complete checkpoint is taken, half-written ones are skipped, and the per-step
logs are rewound to it so that every step is logged once."""
from __future__ import annotations

import json
from pathlib import Path


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
