"""Shared fixtures. Everything runs offline: the hub is never reachable here, and tests must not try."""
from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("SWANLAB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import open_dict  # noqa: E402

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")

# Overrides that shrink any GRPO run to seconds on 2 CPU cores with the tiny random model.
TINY = [
    "model=tiny_random",
    "dataset.train_size=32",
    "dataset.test_size=8",
    "stage.trainer.max_steps=2",
    "stage.trainer.per_device_train_batch_size=4",
    "stage.trainer.num_generations=4",
    "stage.trainer.max_completion_length=12",
    "stage.trainer.save_steps=1",
]

# Every stage of `stage=pipeline`, in order.
ORDER = ["r1_zero", "cold_start", "sft1", "reasoning_rl", "rejection_sampling", "sft2", "eval"]
# The smoke preset, shrunk further for the tiny model: fewer tokens everywhere, a checkpoint at every step.
TINY_PIPELINE = [
    "experiment=pipeline_smoke",
    "model=tiny_random",
    "dataset.train_size=8",
    "dataset.test_size=4",
    "stage.r1_zero.trainer.max_completion_length=8",
    "stage.reasoning_rl.trainer.max_completion_length=8",
    "stage.cold_start.num_prompts=2",
    "stage.cold_start.generation.max_new_tokens=8",
    "stage.rejection_sampling.num_prompts=2",
    "stage.rejection_sampling.generation.max_new_tokens=8",
    "stage.rejection_sampling.filters.mixed_language=false",  # random tokens mix scripts; the filter has its own test
    "stage.sft1.trainer.max_length=256",
    "stage.sft2.trainer.max_length=256",
    "stage.sft2.trainer.save_steps=1",
    "stage.eval.num_prompts=2",
    "stage.eval.generation.max_new_tokens=8",
]


def reload_in_fresh_process(model_dir) -> dict:
    """Load a saved model + tokenizer in a new Python process (no DeepSpeed, no accelerate, nothing of ours) and
    greedily generate 5 tokens. Returns its parameter count, the names of empty or non-finite parameters, and how
    many tokens it generated."""
    import json
    import subprocess
    import sys

    code = ("import sys, json, torch; from transformers import AutoModelForCausalLM, AutoTokenizer; "
            "p = sys.argv[1]; t = AutoTokenizer.from_pretrained(p); m = AutoModelForCausalLM.from_pretrained(p); "
            "ids = t('Hello', return_tensors='pt'); o = m.generate(**ids, max_new_tokens=5, do_sample=False); "
            "print(json.dumps({'params': m.num_parameters(), 'empty': [n for n, q in m.named_parameters() "
            "if q.numel() == 0 or not torch.isfinite(q).all()], 'new_tokens': o.shape[1] - ids['input_ids'].shape[1]}))")
    res = subprocess.run([sys.executable, "-c", code, str(model_dir)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def compose_cfg(overrides=(), run_dir=None):
    """Compose the project's config exactly as the CLI does, optionally setting run.dir."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    if run_dir is not None:
        with open_dict(cfg):
            cfg.run.dir = str(run_dir)
    return cfg


def fake_eval_row(model, dataset, base):
    """A fabricated row of eval's results (r1pipeline/stages/eval.py): every score `base` (+0.1 for free) with an
    interval of +-0.05."""
    from r1pipeline.evaluation import score_columns

    row = {"model": model, "dataset": dataset, "path": f"/runs/{model}", "prompts": 4, "k": 2, "mean_length": 12.5,
           "tokens_per_s": 30.0, "bound_tokens_per_s": 900.0}
    for key in score_columns():
        if not key.endswith(("_lo", "_hi")):
            v = base + (0.1 if key.endswith("free") else 0.0)
            row.update({key: v, f"{key}_lo": v - 0.05, f"{key}_hi": v + 0.05})
    return row


@pytest.fixture(scope="session")
def embedded_model_dir():
    """The embedded SmolLM2 checkpoint, materialized once per machine (~30 s the first time)."""
    from r1pipeline.models import materialize_embedded

    return materialize_embedded("SmolLM2-135M-Instruct")


@pytest.fixture
def tiny_cfg(tmp_path, embedded_model_dir):
    """A composed r1_zero config on the tiny random model, with its own run directory."""
    return lambda *extra: compose_cfg([*TINY, *extra], run_dir=tmp_path / "run")


# Test layers: `pytest -m "not slow"` is the fast layer (config, rewards, data, validation; no model). A test that
# loads a model asks for the embedded checkpoint (directly, or through `tiny_cfg`), so asking for it marks the test
# slow; and a test left in the fast layer that loads a model anyway fails, naming the fix.
MODEL_FIXTURES = {"embedded_model_dir", "tiny_cfg"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _fast_layer_loads_no_model(request, monkeypatch):
    if request.node.get_closest_marker("slow"):
        yield
        return
    import transformers

    def refuse(*args, **kwargs):
        raise AssertionError(f"{request.node.nodeid} loads a model but is not marked slow: ask for the "
                             f"embedded_model_dir fixture (or mark it @pytest.mark.slow)")

    for cls in (transformers.AutoModelForCausalLM, transformers.AutoModelForSequenceClassification):
        monkeypatch.setattr(cls, "from_pretrained", refuse)
        monkeypatch.setattr(cls, "from_config", refuse)
    yield
