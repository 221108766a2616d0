"""Hub dataset configs (GSM8K, NuminaMath-TIR, MATH-500, Countdown-Tasks-3to4) keep real `datasets.load_dataset`
code; here each loads a small local copy in its hub schema (tests/hub_copies.py) and yields prompts with the short
reference answer. Held-out rows never touch training, for every dataset config."""
from __future__ import annotations

import json
import re

import pytest

from conftest import compose_cfg
from hub_copies import DATASETS, HUB, TEST_OFFSET, indices, write_local_copy
from r1pipeline.config import validate
from r1pipeline.data import build_dataset
from r1pipeline.errors import ConfigError

def dataset_overrides(name: str, tmp_path, n: int = 10) -> list[str]:
    """Overrides that build `name` offline and small: hub configs read a local copy in their schema."""
    over = [f"dataset={name}", "dataset.train_size=40", "dataset.test_size=8"]
    if name in HUB:
        over.append(f"dataset.path={write_local_copy(tmp_path / name, name, n)}")
    return over


@pytest.mark.parametrize("name", sorted(HUB))
def test_hub_dataset_config_loads_a_local_copy_in_its_schema(tmp_path, name):
    row, answer, splits = HUB[name]
    data = build_dataset(compose_cfg(dataset_overrides(name, tmp_path)).dataset)
    expected = {answer(i) for s in splits for i in indices(s, 10)}
    for ex in [*data["train"], *data["test"]]:
        if "answer" in ex:
            assert ex["answer"] in expected
        assert [m["role"] for m in ex["prompt"]] == ["system", "user", "assistant"]
        assert "<answer>" in ex["prompt"][1]["content"]


SPLIT_CASES = [
    # (dataset, train rows, where the test rows come from)
    # GSM8K: its own test split; the question it shares with train is dropped from train (10 rows - 2 copies)
    ("gsm8k", 8, "test split"),
    # NuminaMath-TIR: the same
    ("numina_math_tir", 8, "test split"),
    # MATH-500: a test set as a whole, no training rows at all
    ("math_500", 0, "test split"),
    # TinyZero's Countdown has only `train`: 8 rows carved out of it; row 0's second copy may not stay in train
    ("countdown_tasks_3to4", None, "carved from train"),
]


@pytest.mark.parametrize("name,n_train,source", SPLIT_CASES)
def test_held_out_rows_come_from_the_datasets_own_test_split(tmp_path, name, n_train, source):
    data = build_dataset(compose_cfg([*dataset_overrides(name, tmp_path), "dataset.test_size=10"]).dataset)
    test_ids = sorted(row_index(name, r) for r in data["test"])
    if source == "test split":  # all 10 rows of the test split, the one shared with train among them
        assert test_ids == indices("test", 10)
    else:  # 10 // 5 rows of the train split
        assert len(test_ids) == 2 and max(test_ids) < TEST_OFFSET
    if n_train is not None:
        assert len(data["train"]) == n_train


def row_index(name: str, row: dict) -> int:
    """The i that hub_copies built this row from: the first number of its question (Countdown: of its nums, + 1)."""
    text = row["question"] if "question" in row else str(row["nums"][0] - 1)
    return int(re.search(r"\d+", text).group())


@pytest.mark.parametrize("name", DATASETS)
def test_no_test_prompt_is_a_training_prompt(tmp_path, name):
    data = build_dataset(compose_cfg(dataset_overrides(name, tmp_path)).dataset)
    train = {json.dumps(p) for p in data["train"]["prompt"]}
    test = {json.dumps(p) for p in data["test"]["prompt"]}
    assert test and not train & test


def test_a_small_procedural_space_drops_its_chance_collisions_from_train(caplog):
    # two single-digit terms, + or -: 200 problems, so 200 training rows and 50 test rows collide by chance
    cfg = compose_cfg(["dataset=basic_arithmetic", "dataset.train_size=200", "dataset.test_size=50",
                       "dataset.params.min_terms=2", "dataset.params.max_terms=2", "dataset.params.max_digits=1",
                       "dataset.params.operators=[+,-]"])
    with caplog.at_level("INFO", logger="r1pipeline.data"):
        data = build_dataset(cfg.dataset)
    dropped = 200 - len(data["train"])
    assert dropped > 0 and not set(data["train"]["question"]) & set(data["test"]["question"])
    assert f"dropped {dropped} of 200 training rows whose prompt is also a test prompt" in caplog.text


@pytest.mark.parametrize("stage", ["r1_zero", "reasoning_rl", "rejection_sampling", "cold_start", "pipeline"])
def test_training_on_a_test_set_is_refused_before_anything_loads(stage):
    with pytest.raises(ConfigError, match=r"dataset\.split: null - dataset 'math_500' has no training split .*"
                                          r"use dataset=math_500 with stage=eval"):
        validate(compose_cfg([f"stage={stage}", "dataset=math_500"]))
    validate(compose_cfg(["stage=eval", "dataset=math_500"]))  # evaluating on it is what it is for


def test_training_on_the_test_split_is_refused(tmp_path):
    cfg = compose_cfg([*dataset_overrides("gsm8k", tmp_path), "dataset.split=test"])
    with pytest.raises(ConfigError, match=r"dataset\.split: 'test' is also dataset\.test_split"):
        build_dataset(cfg.dataset)
