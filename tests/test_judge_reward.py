"""The LLM-judge reward: strict score parsing, config errors, an unreachable and a silent judge, and (slow) a real
OpenAI-compatible server started here on 127.0.0.1 with `transformers serve` and the embedded model, including the
server stopped in the middle of a batch. No mocked server: the silent judge is a real socket that never answers."""
from __future__ import annotations

import importlib.util
import os
import pickle
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import compose_cfg
from r1pipeline.errors import ConfigError
from r1pipeline.rewards.judge import JudgeError, JudgeReward, parse_score
from r1pipeline.rewards.registry import validate_reward_config
from r1pipeline.rewards.safety import SafeReward

QUESTION = [{"role": "user", "content": "2+2:"}]
TEST_RUBRIC = "Rate this answer to {question} '{response}'. Reply with only a number from 0 to {max_score}."


def conv(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PARSE_CASES = [
    # (reply, score on a 0-10 scale, or the error)
    ("7", 0.7),
    ("7.", 0.7),  # a full stop after the number
    (" Score: 7.5 ", 0.75),
    ("score=10", 1.0),
    ("8/10", 0.8),
    ("0", 0.0),
    ("8/5", "scale of 5"),  # another scale is not silently rescaled
    ("11", "outside [0, 10]"),
    ("I would say 8", "garbled"),  # a number inside prose is not guessed at
    ("8 because it is right", "garbled"),
    ("", "garbled"),
    ("-1", "garbled"),
]


@pytest.mark.parametrize("reply,expected", PARSE_CASES)
def test_parse_score_is_strict(reply, expected):
    if isinstance(expected, float):
        assert parse_score(reply, 10) == pytest.approx(expected)
    else:
        with pytest.raises(JudgeError, match=re.escape(expected)):
            parse_score(reply, 10)


CONFIG_ERRORS = [
    # (reward.judge settings, message)
    ({"model": "m"}, r"reward\.judge: url: None is not an http\(s\) URL; set reward\.judge\.url=.* or .*R1_JUDGE_URL"),
    ({"url": "http://127.0.0.1:1/v1"}, r"reward\.judge: model: not set"),
    ({"url": "http://h/v1", "model": "m", "rubric": "{prompt}"}, r"rubric: unknown field\(s\) \['prompt'\]"),
    ({"url": "http://h/v1", "model": "m", "rubric": "{reference}"}, r"reference_column is not set"),
    ({"url": "http://h/v1", "model": "m", "concurrency": 0}, r"concurrency must be > 0"),
    ({"url": "http://h/v1", "model": "m", "retries": -1}, r"retries must be >= 0"),
]


@pytest.mark.parametrize("spec,message", CONFIG_ERRORS)
def test_judge_config_errors_name_the_field(spec, message, monkeypatch):
    monkeypatch.delenv("R1_JUDGE_URL", raising=False)
    monkeypatch.delenv("R1_JUDGE_MODEL", raising=False)
    with pytest.raises(ConfigError, match=message):
        validate_reward_config({"judge": spec})


def test_judge_mix_takes_url_and_model_from_the_environment(monkeypatch):
    monkeypatch.setenv("R1_JUDGE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("R1_JUDGE_MODEL", "judge-model")
    cfg = compose_cfg(["reward=judge"])
    validate_reward_config(cfg.reward, {"prompt"})
    judge = JudgeReward(**{k: v for k, v in cfg.reward.judge.items() if k != "weight"})
    assert (judge.url, judge.model, list(cfg.reward)) == ("http://127.0.0.1:9/v1", "judge-model", ["format", "judge"])
    with pytest.raises(ConfigError, match=r"needs dataset column\(s\) \['answer'\]"):
        validate_reward_config({"judge": {"reference_column": "answer", "rubric": "{reference}"}}, {"prompt"})


def test_unreachable_judge_gives_none_and_counts_errors():
    judge = JudgeReward(url=f"http://127.0.0.1:{closed_port()}/v1", model="m", retries=2, backoff_s=0.01)
    reward = SafeReward(judge, name="judge")
    t0 = time.monotonic()
    assert reward([conv("4"), conv("5")], prompts=[QUESTION] * 2) == [None, None]
    assert time.monotonic() - t0 < 5
    assert reward.errors == 2 and judge.requests == 6  # 1 + 2 retries each


def test_silent_judge_times_out_with_none(caplog):
    with socket.create_server(("127.0.0.1", 0)) as server:  # accepts connections, never answers
        judge = JudgeReward(url=f"http://127.0.0.1:{server.getsockname()[1]}/v1", model="m", timeout_s=0.3,
                            retries=1, backoff_s=0.01, concurrency=2)
        t0 = time.monotonic()
        scores = SafeReward(judge, name="judge")([conv("4"), conv("5")], prompts=[QUESTION] * 2)
        elapsed = time.monotonic() - t0
    assert scores == [None, None] and elapsed < 3  # two attempts of 0.3 s each, both requests at once
    assert caplog.text.count("timed out (http://127.0.0.1") == 2 and "(attempt 2 of 2)" in caplog.text


def test_judge_pickles_without_its_key(monkeypatch):
    monkeypatch.setenv("R1_JUDGE_API_KEY", "sk-secret")
    judge = JudgeReward(url="http://127.0.0.1:9/v1", model="m")
    blob = pickle.dumps(judge)
    assert b"sk-secret" not in blob and vars(pickle.loads(blob)).keys() == vars(judge).keys()


# ------------------------------------------------------------------------ a real server (slow, one per module)

@pytest.fixture(scope="module")
def judge_server(tmp_path_factory, embedded_model_dir):
    """`transformers serve` on 127.0.0.1 with the embedded model; yields (url, model, process, log path)."""
    exe = Path(sys.executable).with_name("transformers")
    if not exe.exists() or not all(importlib.util.find_spec(m) for m in ("fastapi", "uvicorn")):
        pytest.skip("transformers[serving] is not installed (pip install -e '.[test]')")
    port, log_path = closed_port(), tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen([str(exe), "serve", str(embedded_model_dir), "--host", "127.0.0.1", "--port",
                                 str(port), "--device", "cpu", "--log-level", "info"],
                                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2).read()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()[-2000:]
                time.sleep(0.5)
        yield f"{url}/v1", str(embedded_model_dir), proc, log_path
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.slow
def test_real_judge_scores_parses_strictly_and_caches(judge_server, caplog):
    url, model, _, _ = judge_server
    judge = JudgeReward(url=url, model=model, system="", rubric=TEST_RUBRIC, max_tokens=4, timeout_s=120, retries=0,
                        concurrency=2)
    reward = SafeReward(judge, name="judge")
    completions = [conv("4"), conv("5"), conv("turtles")]
    # The embedded 135M model is a poor judge: it answers "4" for "4" (0.4), and prose for the others (garbled).
    assert reward(completions, prompts=[QUESTION] * 3) == [0.4, None, None]
    assert reward.errors == 2 and caplog.text.count("garbled reply") == 2
    assert reward(completions, prompts=[QUESTION] * 3) == [0.4, None, None]
    assert judge.requests == 5  # the cached score is not asked again; the failures are


@pytest.mark.slow
def test_server_stopped_mid_batch_gives_none_for_the_rest(judge_server):
    url, model, proc, log_path = judge_server
    judge = JudgeReward(url=url, model=model, system="", rubric=TEST_RUBRIC, max_tokens=4, timeout_s=120, retries=1,
                        backoff_s=0.2, concurrency=1)

    def stop_after_first_answer():
        seen, deadline = log_path.read_text().count("POST /v1/chat/completions"), time.monotonic() + 120
        while log_path.read_text().count("POST /v1/chat/completions") == seen and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)

    stopper = threading.Thread(target=stop_after_first_answer, daemon=True)
    stopper.start()
    t0 = time.monotonic()
    scores = judge([conv("4"), conv("6"), conv("7")], prompts=[QUESTION] * 3)
    stopper.join(timeout=5)
    errors = judge.take_errors()
    assert scores == [0.4, None, None] and time.monotonic() - t0 < 120
    assert [i for i, _ in errors] == [1, 2] and all("(attempt 2 of 2)" in reason for _, reason in errors), errors
