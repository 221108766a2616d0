"""No default reward mix pays for restating the prompt, or for the right answer where the R1 format does not put it.

The table: the audit's generic hacks (r1pipeline/reward_audit.py) plus Countdown's own, tried against the default mix
of every GRPO stage (`reward=r1_zero` for r1_zero, `stage.rewards` of reasoning_rl) for every dataset config; hub
datasets on local copies in their schema (tests/hub_copies.py). "Pays" is the audit's definition: the hack scores
above its matched control (the same completion with a wrong answer of the same length in the hack's place).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from conftest import compose_cfg
from hub_copies import DATASETS, HUB, write_local_copy
from r1pipeline.data import build_dataset
from r1pipeline.reward_audit import HACKS, Case, Hack, audit_mix, completion_for, r1
from r1pipeline.rewards import build_rewards, register


def _countdown(build):
    """A Countdown-only hack: no pairs on rows without `nums`."""
    return lambda c: build(c) if "nums" in c.row else []


def _reused(c: Case):
    a = c.row["nums"][0]
    hack = f"{c.solution} + {a} - {a}"  # the target hit, every number used, the first one twice
    return [(r1(hack), r1(c.wrong(hack)))]


def _restated(c: Case):
    a, b, target = c.row["nums"][0], c.row["nums"][1], c.row["target"]
    return [(r1(f"{a} * {b} = {target}"), r1(f"{a} * {b} = {c.wrong(str(target))}"))]


TABLE = (
    *HACKS,  # generic: prompt_number, outside_tags, empty_think, answer_in_think, second_answer_block, several_answers
    # Countdown: the target reached with a number used twice
    Hack("number_reused", "a number used twice", _countdown(_reused)),
    # Countdown: a wrong expression that ends by restating the target
    Hack("target_restated_after_wrong_expression", "a wrong expression '= target'", _countdown(_restated),
         needs_solution=False),
)
MIXES = {"r1_zero": [], "reasoning_rl": ["stage=reasoning_rl"]}  # stage -> overrides; its default mix


def solution(row: dict) -> str | None:
    """A right answer: the row's reference, MBPP's program, or for TinyZero's Countdown copy (no reference) its sum
    of numbers."""
    return row.get("answer") or row.get("code") or " + ".join(map(str, row["nums"]))


def rows_and_mix(name: str, stage: str, tmp_path) -> tuple[list[dict], dict]:
    over = [f"dataset={name}", "dataset.train_size=8", "dataset.test_size=4", *MIXES[stage]]
    if name in HUB:
        over.append(f"dataset.path={write_local_copy(tmp_path / name, name)}")
    cfg = compose_cfg(over)
    data = build_dataset(cfg.dataset)
    rows = data["train"] if len(data["train"]) else data["test"]  # MATH-500: a test set, its eval check
    return [rows[i] for i in range(4)], (cfg.stage.get("rewards") or cfg.reward)


@pytest.mark.parametrize("stage", sorted(MIXES))
@pytest.mark.parametrize("name", DATASETS)
def test_no_default_mix_pays_for_a_hack(tmp_path, name, stage):
    rows, mix = rows_and_mix(name, stage, tmp_path)
    report = audit_mix(mix, rows, TABLE, solution)
    assert report["paid"] == [] and report["skipped"] == {}
    countdown = "nums" in rows[0]
    not_tried = set() if countdown else {"number_reused", "target_restated_after_wrong_expression"}
    if not any(any(ch.isdigit() for ch in r["prompt"][-1]["content"] + str(r["prompt"])) for r in rows):
        not_tried.add("prompt_number")  # e.g. bf: no number in the prompt to copy
    assert set(report["tried"]) == {h.name for h in TABLE} - not_tried
    # not vacuous: the mix's correctness reward pays the honest answer in R1 format on every row
    correct = {f.name: f for f in build_rewards(mix)[0]}["correct"]
    honest = [completion_for(r["prompt"], r1(solution(r))) for r in rows]
    columns = {k: [r[k] for r in rows] for k in rows[0] if k != "prompt"}
    assert correct(honest, prompts=[r["prompt"] for r in rows], **columns) == [1.0] * 4


def test_the_old_reasoning_rl_mix_on_countdown_is_caught():
    """reasoning_rl used `accuracy` against Countdown's reference expression: value equality, so the target (which
    the prompt gives away) scored 1.0. The audit names it, and the tags-only and length-scaled rewards besides."""
    cfg = compose_cfg(["dataset=countdown", "dataset.train_size=8", "dataset.test_size=4"])
    rows = [build_dataset(cfg.dataset)["train"][i] for i in range(4)]
    mix = {"accuracy": {"reference_column": "answer"}, "format": {}, "language_consistency": {},
           "countdown": {}, "cosine": {"max_len": 100}}
    report = audit_mix(mix, rows, TABLE, solution)
    assert [(f["hack"], f["reward"], f["rows"], f["of"]) for f in report["paid"]] == [
        ("prompt_number", "accuracy", 4, 4),  # the target restated
        ("prompt_number", "cosine", 4, 4),
        ("empty_think", "accuracy", 4, 4),  # tags mode reads an answer after an empty think block
        ("empty_think", "countdown", 4, 4),
        ("empty_think", "cosine", 4, 4),
        ("second_answer_block", "accuracy", 4, 4),  # ... and the last of two answer blocks
        ("second_answer_block", "countdown", 4, 4),
        ("second_answer_block", "cosine", 4, 4),
        ("number_reused", "accuracy", 4, 4),  # value equality does not check the numbers
        ("number_reused", "cosine", 4, 4),
    ]
    first = report["paid"][0]
    assert (first["hack_score"], first["control_score"]) == (1.0, 0.0)
    assert first["example"] == r1(str(rows[0]["target"]))  # of the prompt's numbers, the target is the one paid


def test_a_reward_that_ignores_the_answer_never_pays_even_when_it_scores_length():
    # matched controls have the same length, so a length-only reward scores hack and control alike
    cfg = compose_cfg(["dataset.train_size=8", "dataset.test_size=4"])
    rows = [build_dataset(cfg.dataset)["train"][i] for i in range(2)]
    mix = {"format": {}, "tag_count": {}, "repetition_penalty": {}, "reasoning_steps": {}, "test_length_only": {}}
    assert audit_mix(mix, rows, TABLE, solution)["paid"] == []


@register("test_length_only")
class LengthOnly:
    """Test-only reward: the completion's length in characters, whatever it says."""

    def __call__(self, completions, **kwargs):
        return [float(len(c[0]["content"])) for c in completions]


# ------------------------------------------------------------------------------------------------ in a GRPO stage

class ModelLoaded(Exception):
    pass


@pytest.fixture
def no_model(monkeypatch):
    """The stage stops where it would load the tokenizer or model: what ran before is what the audit may use."""
    def refuse(*args, **kwargs):
        raise ModelLoaded()

    monkeypatch.setattr("r1pipeline.stages.grpo.load_tokenizer", refuse)
    monkeypatch.setattr("r1pipeline.stages.grpo.load_model", refuse)


AUDIT_CASES = [
    # (overrides, expected log lines (level, start of the message))
    # the default mix: nothing pays
    ([], [("INFO", "reward audit: 36 hack completions on 4 rows in")]),  # small_sums: fewer numbers to copy
    # open-r1's shaping on Countdown: accuracy and cosine pay for the target restated
    (["dataset=countdown", "reward=tutorial5"],
     [("WARNING", "reward audit: reward 'accuracy' pays for prompt_number (an answer copied "
                  "from a number in the prompt: 4/4 rows, 1 vs 0 for the control)"),
      ("WARNING", "reward audit: reward 'cosine' pays for prompt_number"),
      ("INFO", "reward audit: 51 hack completions on 4 rows in")]),
    # switched off in the reward group
    (["dataset=countdown", "reward=tutorial5", "reward.audit=false"],
     [("INFO", "reward audit: skipped (reward.audit=false)")]),
    # switched off in a stage's own mix
    (["stage=reasoning_rl", "stage.inputs.model=base", "stage.rewards.audit=false"],
     [("INFO", "reward audit: skipped (stage.rewards.audit=false)")]),
]


@pytest.mark.parametrize("overrides,expected", AUDIT_CASES)
def test_grpo_stage_audits_its_mix_before_the_model_loads(tiny_cfg, no_model, caplog, overrides, expected):
    cfg = tiny_cfg(*overrides)
    with caplog.at_level(logging.INFO, logger="r1pipeline.reward_audit"), pytest.raises(ModelLoaded):
        from r1pipeline.cli import run_stage

        run_stage(cfg)
    got = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "r1pipeline.reward_audit"]
    assert len(got) == len(expected)
    for (level, message), (want_level, start) in zip(got, expected):
        assert level == want_level and message.startswith(start), message
    log_txt = (Path(cfg.run.dir) / cfg.stage.name / "log.txt").read_text()
    assert expected[0][1] in log_txt  # in the stage's own log too


def test_audit_report_is_json(tmp_path):
    cfg = compose_cfg(["reward=tutorial5", "dataset.train_size=8", "dataset.test_size=4"])
    rows = [build_dataset(cfg.dataset)["train"][i] for i in range(4)]
    report = audit_mix(cfg.reward, rows)
    assert json.loads(json.dumps(report)) == report
    assert set(report) == {"enabled", "rows", "tried", "skipped", "paid", "wall_ms"}


@pytest.mark.parametrize("name", DATASETS)
def test_every_stage_verifies_with_the_datasets_one_declared_check(tmp_path, name):
    from omegaconf import OmegaConf

    from r1pipeline.verify import check_verifier

    rows, _ = rows_and_mix(name, "r1_zero", tmp_path)
    declared = OmegaConf.to_container(compose_cfg([f"dataset={name}"]).dataset.verify)
    for stage in ("cold_start", "rejection_sampling", "eval"):
        assert OmegaConf.to_container(compose_cfg([f"dataset={name}", f"stage={stage}"]).stage.verify) == declared
    for stage in MIXES:
        mix = rows_and_mix(name, stage, tmp_path)[1]
        assert OmegaConf.to_container(mix.correct.checks) == declared
    check_verifier(declared, set(rows[0]))  # and the check finds the columns it reads


def test_a_bad_stage_mix_is_named_at_its_own_field():
    from r1pipeline.config import validate
    from r1pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^stage\.rewards\.audit: must be true or false"):
        validate(compose_cfg(["stage=reasoning_rl", "stage.rewards.audit=maybe"]))
    with pytest.raises(ConfigError, match=r"^stage\.rewards\.correct\.checks\.countdwn: unknown reward"):
        validate(compose_cfg(["stage=reasoning_rl", "dataset.verify=[countdwn]"]))
