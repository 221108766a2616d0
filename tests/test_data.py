"""Offline data: procedural Countdown is reproducible and well-formed; hub-schema loading works on local fixtures."""
from __future__ import annotations

import json

import pytest

from conftest import compose_cfg
from r1pipeline.data import build_dataset, check, draw_prompts
from r1pipeline.errors import ConfigError
from r1pipeline.rewards.countdown import countdown_score


def _countdown(**over):
    cfg = compose_cfg(["dataset=countdown", "dataset.train_size=40", "dataset.test_size=10",
                       *[f"dataset.{k}={v}" for k, v in over.items()]])
    return cfg, build_dataset(cfg.dataset)


def test_countdown_rows_are_reproducible_solvable_and_templated():
    cfg, data = _countdown()
    _, again = _countdown()
    assert data["train"]["prompt"] == again["train"]["prompt"]  # same seed, same data
    assert len(data["train"]) == 40 and len(data["test"]) == 10
    train_q = set(data["train"]["question"])
    assert not train_q & set(data["test"]["question"]), "test split overlaps train"
    p = cfg.dataset.params
    for row in data["train"]:
        assert p.min_numbers <= len(row["nums"]) <= p.max_numbers
        assert p.min_target <= row["target"] <= p.max_target
        # the generator's reference answer solves the task under our own verifier
        assert countdown_score(row["answer"], row["nums"], row["target"]) == 1.0
        roles = [m["role"] for m in row["prompt"]]
        assert roles == ["system", "user", "assistant"]
        assert str(row["target"]) in row["prompt"][1]["content"]
        assert row["prompt"][2]["content"].endswith("<think>")


def test_other_seed_gives_other_tasks():
    _, a = _countdown()
    _, b = _countdown(seed=7)
    assert a["train"]["question"] != b["train"]["question"]


def test_sampling_stages_draw_prompts_by_seed_and_stage():
    _, data = _countdown()
    train = data["train"]
    draw = lambda seed, stage: draw_prompts(train, 10, seed, stage)["question"]  # noqa: E731
    assert draw(42, "cold_start") == draw(42, "cold_start")  # reproducible
    assert draw(42, "cold_start") != draw(7, "cold_start")  # another seed samples other prompts
    assert draw(42, "cold_start") != draw(42, "rejection_sampling")  # the stages do not take the same rows
    assert set(draw(42, "cold_start")) <= set(train["question"]) and len(set(draw(42, "cold_start"))) == 10
    assert len(draw_prompts(train, 1000, 0, "x")) == len(train)  # more than there are: all of them


def test_hub_schema_loads_from_a_local_copy(tmp_path):
    # Same schema as the hub's Countdown-Tasks-3to4 (nums, target), written locally: the hub code path reads it.
    rows = [{"nums": [i, i + 1, 3], "target": 2 * i + 4} for i in range(1, 31)]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    cfg = compose_cfg(["dataset=countdown_tasks_3to4", f"dataset.path={tmp_path}", "dataset.test_size=5"])
    data = build_dataset(cfg.dataset)
    assert len(data["test"]) == 5 and len(data["train"]) == 25
    row = data["train"][0]
    assert f"equals {row['target']}" in row["prompt"][1]["content"]


def test_bad_dataset_source_and_path_name_the_field():
    with pytest.raises(ConfigError, match="dataset.source: 'nowhere' is unknown"):
        check(compose_cfg(["dataset.source=nowhere"]).dataset)
    with pytest.raises(ConfigError, match="dataset.path: /no/such/file.jsonl does not exist"):
        build_dataset(compose_cfg(["dataset.source=local", "dataset.path=/no/such/file.jsonl"]).dataset)
    with pytest.raises(ConfigError, match=r"dataset.task/params: reasoning-gym rejected"):
        build_dataset(compose_cfg(["+dataset.params.no_such_param=1"]).dataset)


def test_max_prompt_tokens_drops_the_longer_prompts_from_train_and_test(embedded_model_dir, caplog):
    from r1pipeline.data import prompt_tokens
    from r1pipeline.models import load_tokenizer, resolve_model_path

    cfg, full = _countdown()  # Countdown prompts are 24x tokens with the embedded tokenizer: a limit inside that range
    path = cfg.model.path
    tok = load_tokenizer(resolve_model_path(path))
    lengths = {split: prompt_tokens(full[split]["prompt"], tok) for split in ("train", "test")}
    limit = sorted(lengths["train"])[len(lengths["train"]) // 2]
    caplog.set_level("INFO", logger="r1pipeline.data")
    cut = build_dataset(compose_cfg(["dataset=countdown", "dataset.train_size=40", "dataset.test_size=10",
                                     f"dataset.max_prompt_tokens={limit}"]).dataset, path)
    for split in ("train", "test"):
        kept = [q for q, n in zip(full[split]["question"], lengths[split]) if n <= limit]
        assert cut[split]["question"] == kept  # the others, in order, and nothing else
    dropped = sum(n > limit for n in lengths["train"])
    assert 0 < dropped < 40
    assert f"dataset.max_prompt_tokens={limit}: dropped {dropped} of 40 train prompts" in caplog.text
    # the count is of what the model is given: the chat template, and the prefill left open to continue
    from r1pipeline.rollout import chat_prompt_ids

    tok = load_tokenizer(str(embedded_model_dir))
    ids = chat_prompt_ids(tok, full["train"]["prompt"][0])
    assert len(ids) == lengths["train"][0] and tok.decode(ids).endswith("<|im_start|>assistant\n<think>")


def test_max_prompt_tokens_below_every_prompt_names_the_field(tmp_path, embedded_model_dir):
    from r1pipeline.cli import run_stage

    cfg = compose_cfg(["model=tiny_random", "dataset=countdown", "dataset.train_size=8", "dataset.test_size=4",
                       "dataset.max_prompt_tokens=10"], run_dir=tmp_path / "run")
    with pytest.raises(ConfigError, match=r"dataset\.max_prompt_tokens: every one of the 8 train prompts is over 10 "
                                          r"tokens \(chat template and prefill included; the shortest has 2\d\d\); "
                                          r"raise dataset\.max_prompt_tokens to at least 2\d\d"):
        run_stage(cfg)
    assert not (tmp_path / "run" / "r1_zero").exists()  # before the stage directory and the model
    with pytest.raises(ConfigError, match=r"dataset\.max_prompt_tokens: 0 must be an integer of at least 1"):
        check(compose_cfg(["dataset.max_prompt_tokens=0"]).dataset)
