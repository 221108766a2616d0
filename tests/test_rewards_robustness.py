"""Rewards never crash training: one finite float (or None) per completion on any text, bounded time for math-verify
from any thread or process without leaking processes, pickling, per-step metrics, and config errors."""
from __future__ import annotations

import json
import math
import multiprocessing
import pickle
import threading
import time

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import compose_cfg
from r1pipeline.callbacks import format_step_line
from r1pipeline.errors import ConfigError
from r1pipeline.rewards import build_rewards, mathcheck, validate_reward_config
from r1pipeline.rewards.registry import REWARDS, reward_names

PREFILL = "Let me solve this step by step.\n<think>"
PROMPT = [{"role": "user", "content": "Using the numbers [3, 5, 2], create an equation that equals 16."},
          {"role": "assistant", "content": PREFILL}]
TOWER = r"\boxed{9^{9^{9^{9^{9}}}}}"  # math-verify's verify() runs for minutes on this against "2"
reward_names()  # imports every reward module, so any test here also runs alone (-k)

# Every shipped reward with non-default parameters, so pickling must carry them.
PARAMS = {
    "accuracy": {"reference_column": "answer", "timeout_s": 3.0},
    "cosine": {"max_len": 50, "min_value_wrong": -2.0, "timeout_s": 3.0},
    "countdown": {},
    "format": {"require_nonempty": False},
    "tag_count": {},
    "reasoning_steps": {"min_steps": 2},
    "arithmetic_steps": {},
    "repetition_penalty": {"ngram_size": 2, "max_penalty": -0.5},
    "overlong": {"max_completion_length": 64, "buffer_length": 16},
    "reasoning_gym": {},
    "language_consistency": {"language": "en"},
    "correct": {"checks": ["countdown", "reasoning_gym", {"accuracy": {"timeout_s": 3.0}}], "answer_from": "anywhere"},
    "code": {"timeout_s": 3.0, "cpu_s": 2, "memory_mb": 256, "workers": 2},
    "judge": {"url": "http://127.0.0.1:9/v1", "model": "judge", "timeout_s": 1.0, "retries": 0},  # nothing listens
    "reward_model": {"path": "/no/checkpoint", "batch_size": 2},  # rows here have no `kind`: None, nothing loads
}
ROW = {"answer": "16", "nums": [3, 5, 2], "target": 16, "task": "countdown", "question": "",
       "test_list": ["assert f(16) == 16"], "test_setup_code": "",
       "metadata": json.dumps({"numbers": [3, 5, 2], "target": 16})}
SAMPLES = [f"{PREFILL} 3+5=8, 8*2=16</think><answer>(3 + 5) * 2</answer>",
           "</think><answer>16</answer>", "Step 1: 我们 add add add add</think><answer>3*5+2</answer>", ""]


def ours() -> list[str]:
    return [n for n in reward_names() if REWARDS[n].__module__.startswith("r1pipeline.rewards.")]


def call(name: str, texts: list[str], reward=None):
    reward = reward or REWARDS[name](**PARAMS[name])
    n = len(texts)
    columns = {k: [v] * n for k, v in ROW.items()}
    ids = [list(range(len(t) // 4)) for t in texts]
    return reward([[{"role": "assistant", "content": t}] for t in texts], prompts=[PROMPT] * n,
                  completion_ids=ids, **columns)


def assert_scores(scores, n):
    assert isinstance(scores, list) and len(scores) == n
    for s in scores:
        assert s is None or (isinstance(s, float) and math.isfinite(s)), s


def test_every_shipped_reward_is_covered_here():
    assert sorted(PARAMS) == ours()


# ------------------------------------------------------------------------------------------------ fuzz

FRAGMENTS = ["<think>", "</think>", "<answer>", "</answer>", "<answer><answer>", "\\boxed{", "\\boxed{1}", "}", "{",
             "$", "$$", "\\frac{1}{", "Step 1:", "\n1. ", "\n- ", "First,", "我们", "Привет", "مرحبا", "\u200b",
             "\ud7ff", "\U0001f600", "e\u0301", "9" * 400, "(" * 60, "**", "__import__('os')", "= 16", " ", "\n"]
TEXT = st.lists(st.one_of(st.text(max_size=40), st.sampled_from(FRAGMENTS)), max_size=25).map("".join)


@pytest.mark.parametrize("name", sorted(PARAMS))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(TEXT, min_size=1, max_size=3))
def test_fuzz_any_text_gives_one_finite_score_or_none_each(name, texts):
    t0 = time.monotonic()
    assert_scores(call(name, texts), len(texts))
    assert time.monotonic() - t0 < 3 * PARAMS[name].get("timeout_s", 1.0) + 5


LONG = [
    "a" * 200_000,  # 200k characters of one letter
    "<think>" + "why " * 50_000 + "</think><answer>16</answer>",  # a 200k-character chain of thought
    "<answer>" + "1+" * 100_000 + "1</answer>",  # a 200k-character expression
    "\\boxed{" * 20_000 + "16",  # unclosed boxes, nested
    "<think><think><answer><think>" * 7_000,  # nested, unbalanced tags
    "我们" * 50_000 + "Привет " * 10_000,  # mixed scripts
    "\U0001f600\u0301\u200b" * 60_000,  # emoji, combining marks, zero-width spaces
    "<think>" + "\\( $$ \\[ $ " * 20_000 + "</think>",  # unclosed math delimiters
]


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_very_long_and_pathological_texts_are_scored_quickly(name):
    t0 = time.monotonic()
    assert_scores(call(name, LONG), len(LONG))
    assert time.monotonic() - t0 < 20  # accuracy/cosine: bounded by timeout_s per completion at worst


# ------------------------------------------------------------------------------------------------ math-verify bound

def _children():
    return {p.pid for p in psutil.Process().children(recursive=True)}


def test_math_verify_timeout_kills_the_helper_and_leaks_nothing():
    reward = REWARDS["accuracy"](timeout_s=1.0)
    assert call("accuracy", ["</think><answer>16</answer>"], reward) == [1.0]  # starts the helper
    first = mathcheck.helper_pid()
    assert _children() == {first}
    t0 = time.monotonic()
    got = reward([f"</think><answer>{TOWER}</answer>"], answer=["2"])
    assert got == [0.0] and time.monotonic() - t0 < 1.0 + 1.5
    assert not psutil.pid_exists(first), "the hung helper was killed and reaped"
    assert mathcheck.helper_pid() is None and _children() == set()
    assert call("accuracy", ["</think><answer>16</answer>"], reward) == [1.0]  # a fresh helper serves again
    mathcheck.shutdown()
    assert _children() == set()


def test_math_verify_works_off_the_main_thread():
    out = {}

    def work(i):
        out[i] = REWARDS["accuracy"]()(["</think><answer>\\frac{32}{2}</answer>", "</think><answer>15</answer>"],
                                       answer=["16", "16"])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert out == {i: [1.0, 0.0] for i in range(3)}


def _score_in_worker(texts):
    from r1pipeline.rewards.accuracy import AccuracyReward

    reward = AccuracyReward(timeout_s=1.0)
    return reward(texts, answer=["2"] * len(texts)), mathcheck.helper_pid()


def test_math_verify_works_in_daemonic_worker_processes_and_leaves_no_helper():
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:  # pool workers are daemonic: they may not start multiprocessing children
        scores, helper = pool.apply(_score_in_worker, ([f"<answer>{TOWER}</answer>", "<answer>2</answer>"],))
    assert scores == [0.0, 1.0]
    deadline = time.monotonic() + 10
    while psutil.pid_exists(helper) and psutil.Process(helper).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the worker's helper outlived it"
        time.sleep(0.1)


# ------------------------------------------------------------------------------------------------ pickling

@pytest.mark.parametrize("name", sorted(PARAMS))
def test_pickle_round_trip_scores_the_same(name):
    reward = REWARDS[name](**PARAMS[name])
    clone = pickle.loads(pickle.dumps(reward))
    assert type(clone) is type(reward) and vars(clone).keys() == vars(reward).keys()
    assert call(name, SAMPLES, clone) == call(name, SAMPLES, reward)


def test_built_mix_pickles():
    funcs, weights = build_rewards(compose_cfg(["reward=tutorial5"]).reward)
    clones = pickle.loads(pickle.dumps(funcs))
    assert [c.name for c in clones] == ["accuracy", "format", "reasoning_steps", "cosine", "repetition_penalty"]
    assert weights == [1.0, 1.0, 0.2, 1.0, 1.0]


# ------------------------------------------------------------------------------------------------ metrics

class Boom:
    """Raises on completions that mention 'boom'."""

    def __call__(self, completions, **kwargs):
        if any("boom" in c[0]["content"] for c in completions):
            raise RuntimeError("boom")
        return [0.5] * len(completions)


def test_safe_reward_logs_min_max_errors_and_the_recorder_format_compliance_once_per_batch():
    from r1pipeline.callbacks import SampleRecorder
    from r1pipeline.rewards.format import format_compliance

    recorder = SampleRecorder(2, batch_metrics={"format_compliance": format_compliance})
    funcs, _ = build_rewards({"tag_count": {"weight": 0.5}, "format": {"weight": 1.0}}, recorder=recorder)
    logged = []
    texts = [" a</think><answer>16</answer>", " a</think>", "no tags", " b</think><answer>1</answer>"]
    completions = [[{"role": "assistant", "content": t}] for t in texts]
    for f in funcs:  # TRL hands every reward the same batch
        f(completions, prompts=[PROMPT] * 4, log_metric=lambda k, v: logged.append((k, v)))
    # format compliance does not depend on the mix's order or on a format reward in it: the recorder logs it
    assert logged == [("rewards/tag_count/errors", 0.0), ("rewards/tag_count/min", 0.25),  # the prefill's <think>
                      ("rewards/tag_count/max", 1.0), ("format_compliance", 0.5),
                      ("rewards/format/errors", 0.0), ("rewards/format/min", 0.0), ("rewards/format/max", 1.0)]
    assert [r["rewards"] for r in recorder.drain()] == [{"tag_count": 1.0, "format": 1.0},
                                                        {"tag_count": 0.5, "format": 0.0}]


def test_safe_reward_counts_errors_per_sample():
    from r1pipeline.rewards.safety import SafeReward

    safe, logged = SafeReward(Boom(), name="boom"), {}
    got = safe([[{"role": "assistant", "content": t}] for t in ("ok", "boom", "fine")],
               log_metric=lambda k, v: logged.update({k: v}))
    assert got == [0.5, 0.0, 0.5]
    assert logged == {"rewards/boom/errors": 1.0, "rewards/boom/min": 0.0, "rewards/boom/max": 0.5}


def test_step_line_shows_format_compliance_and_groups_without_signal():
    logs = {"reward": 0.5, "reward_std": 0.25, "rewards/format/mean": 0.4, "completions/mean_length": 80.0,
            "format_compliance": 0.375, "frac_reward_zero_std": 0.5, "step_time": 20.0}
    assert format_step_line(logs, 3, 10) == ("step 3/10 | reward 0.500±0.25 | format 0.40 | len 80 | format-ok 38% "
                                             "| no-signal groups 50% | 20.0 s/step")
    logs.update({"rollout/tokens_per_s": 1365.4, "rollout/share_of_bound": 0.0025})
    assert format_step_line(logs, 3, 10).endswith("| rollout 1365 tok/s (0.2% of bandwidth bound) | 20.0 s/step")


# ------------------------------------------------------------------------------------------------ config

def test_shipped_mixes_compose_with_overrides():
    cfg = compose_cfg(["reward=tutorial5", "reward.cosine.max_len=500"])
    assert cfg.reward.cosine.max_len == 500
    funcs, _ = build_rewards(cfg.reward)
    assert funcs[3].reward.max_len == 500
    # overlong's length follows the trainer's max_completion_length, also when that is overridden
    dapo = compose_cfg(["reward=dapo", "stage.trainer.max_completion_length=96"])
    assert dapo.reward.overlong.max_completion_length == 96
    default = compose_cfg(["reward=dapo"])
    assert default.reward.overlong.max_completion_length == default.stage.trainer.max_completion_length


@pytest.mark.parametrize("mix,message", [
    ({"cosine": {"max_len": 0}}, r"reward\.cosine\.max_len: must be positive"),
    ({"language_consistency": {"language": "xx"}}, r"reward\.language_consistency\.language: unknown language"),
    ({"repetition_penalty": {"max_penalty": 1}}, r"reward\.repetition_penalty\.max_penalty: must be <= 0"),
    ({"accurcy": {}}, r"reward\.accurcy: unknown reward \(did you mean 'accuracy'\?\); valid rewards: accuracy, "),
    ({"cosine": {"maxlen": 1}}, r"reward\.cosine\.maxlen: unknown parameter; cosine takes: weight, min_value_wrong"),
    # the reserved audit key is a switch, not a reward
    ({"format": {}, "audit": "yes"}, r"reward\.audit: must be true or false"),
    # a mix of nothing but the audit switch is empty
    ({"audit": True}, r"reward: the mix is empty"),
    # correct's checks are validated as a mix of their own, with their full field name
    ({"correct": {"checks": ["countdwn"]}}, r"reward\.correct\.checks\.countdwn: unknown reward \(did you mean 'countdown'"),
    ({"correct": {"checks": [{"accuracy": {"column": "x"}}]}}, r"reward\.correct\.checks\.accuracy\.column: unknown parameter"),
    ({"correct": {"checks": ["countdown"], "answer_from": "inside"}}, r"reward\.correct\.answer_from: 'inside' is not"),
])
def test_bad_reward_values_are_config_errors(mix, message):
    with pytest.raises(ConfigError, match=message):
        validate_reward_config(mix)


def test_correct_reports_the_columns_its_checks_read():
    # Countdown's check on a math dataset's columns: named at the check, before anything loads
    with pytest.raises(ConfigError, match=r"reward\.correct\.checks\.countdown: needs dataset column\(s\) \['nums', 'target'\]"):
        validate_reward_config({"correct": {"checks": ["countdown"]}}, {"question", "answer", "prompt"})
    validate_reward_config({"correct": {"checks": [{"accuracy": {"reference_column": "solution"}}]}},
                           {"solution", "prompt"})


def test_the_audit_switch_is_not_built_as_a_reward():
    funcs, weights = build_rewards({"format": {"weight": 1.0}, "audit": False})
    assert [f.name for f in funcs] == ["format"] and weights == [1.0]


def test_reasoning_gym_mix_runs_on_basic_arithmetic_rows():
    from r1pipeline.stages.grpo import prepare_data, reward_cfg

    cfg = compose_cfg(["dataset=basic_arithmetic", "reward=reasoning_gym", "dataset.train_size=4",
                       "dataset.test_size=2"])
    rows = prepare_data(cfg)["train"]
    assert rows[0]["task"] == "basic_arithmetic" and "{question}" not in rows[0]["prompt"][1]["content"]
    funcs, _ = build_rewards(reward_cfg(cfg))
    n = len(rows)
    completions = [[{"role": "assistant", "content": f" ok</think><answer>{a}</answer>"}] for a in rows["answer"]]
    cols = {k: rows[k] for k in rows.column_names if k != "prompt"}
    assert [f(completions, prompts=rows["prompt"], **cols) for f in funcs] == [[1.0] * n, [1.0] * n, [1.0] * n]
