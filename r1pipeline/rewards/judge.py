"""The LLM-judge reward: a rubric score from any OpenAI-compatible chat endpoint."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import string
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

from r1pipeline.errors import ConfigError
from r1pipeline.rewards.registry import register
from r1pipeline.rewards.text import extract_answer, last_user_text, responses

log = logging.getLogger(__name__)
SYSTEM = "You are a strict grader."
RUBRIC = ("Question: {question}\nResponse: {response}\n"
          "Rate the response from 0 to {max_score}. Reply with only the number.")
FIELDS = {"question", "response", "answer", "reference", "max_score"}
# The whole reply must be the score: "7", "7.", "7/10", "Score: 7.5". Anything else is garbled, never guessed at.
SCORE = re.compile(r"\s*(?:score\s*[:=]?\s*)?(\d+(?:\.\d+)?)\s*(?:/\s*(\d+(?:\.\d+)?))?\s*\.?\s*", re.IGNORECASE)
MAX_REPLY_BYTES = 1 << 20
RETRY_STATUS = {408, 429, 500, 502, 503, 504}


class JudgeError(Exception):
    """One request that did not give a score; `retry` says whether another attempt may."""

    def __init__(self, message: str, retry: bool):
        super().__init__(message)
        self.retry = retry


def parse_score(reply: str, max_score: float) -> float:
    """The reply's score scaled to [0, 1]; JudgeError when the reply is anything but a score in range."""
    m = SCORE.fullmatch(reply or "")
    if m is None:
        raise JudgeError(f"garbled reply {reply[:200]!r}", retry=False)
    value, scale = float(m.group(1)), m.group(2)
    if scale is not None and float(scale) != max_score:
        raise JudgeError(f"reply {reply[:200]!r} is on a scale of {scale}, not {max_score:g}", retry=False)
    if not 0 <= value <= max_score:
        raise JudgeError(f"score {value:g} is outside [0, {max_score:g}]", retry=False)
    return value / max_score


@register("judge")
class JudgeReward:
    """A judge model's rubric score for each completion, through an OpenAI-compatible `POST {url}/chat/completions`.

    score = n / max_score, where the judge's whole reply must be the number n (optionally "Score:" before it,
    "/max_score" or "." after it) with 0 <= n <= max_score. The rubric is a template over {question} (the prompt's
    last user turn), {response} (prefill + completion), {answer} (the last answer block), {reference} (from
    `reference_column`) and {max_score}. Requests run at most `concurrency` at a time, each with `timeout_s` per
    attempt and up to `retries` more attempts after a connection error, timeout, HTTP 408/429/5xx, with exponential
    backoff. Successful scores are cached per (judge prompt, completion) for the life of the reward. An unreachable,
    slow or garbled judge gives None (TRL then leaves the sample out of this reward), counted in
    `rewards/judge/errors` and logged with the reason: never a crash, never a silent 0. Range [0, 1] or None.

    The URL and model come from the config or the environment (R1_JUDGE_URL, R1_JUDGE_MODEL); the API key only from
    the environment variable named by `api_key_env`, because config values are written to config.yaml, the manifest
    and the tracker.

    Example (max_score 10): judge replies "8" -> 0.8; "Score: 7/10" -> 0.7; "I would say 8" -> None, one error;
    connection refused after every retry -> None, one error.
    """

    required_columns = ("reference_column",)  # only when set

    def __init__(self, url: str | None = None, model: str | None = None, api_key_env: str = "R1_JUDGE_API_KEY",
                 system: str = SYSTEM, rubric: str = RUBRIC, max_score: float = 10, reference_column: str | None = None,
                 timeout_s: float = 30.0, retries: int = 2, backoff_s: float = 1.0, concurrency: int = 4,
                 max_tokens: int = 16, temperature: float = 0.0, cache_size: int = 10_000):
        self.url = url or os.environ.get("R1_JUDGE_URL")
        self.model = model or os.environ.get("R1_JUDGE_MODEL")
        self.api_key_env, self.system, self.rubric, self.max_score = api_key_env, system, rubric, max_score
        self.reference_column, self.timeout_s, self.retries, self.backoff_s = reference_column, timeout_s, retries, \
            backoff_s
        self.concurrency, self.max_tokens, self.temperature = concurrency, max_tokens, temperature
        self.cache_size, self.cache, self.requests = cache_size, OrderedDict(), 0  # requests: HTTP attempts made
        self._errors: list[tuple[int, str]] = []
        self._check()

    def _check(self) -> None:
        if not self.url or not str(self.url).startswith(("http://", "https://")):
            raise ConfigError(f"url: {self.url!r} is not an http(s) URL; set reward.judge.url=http://HOST:PORT/v1 "
                             f"(any OpenAI-compatible server) or the environment variable R1_JUDGE_URL")
        if not self.model:
            raise ConfigError("model: not set; set reward.judge.model=<name the server knows> or R1_JUDGE_MODEL")
        unknown = {f for _, f, _, _ in string.Formatter().parse(self.rubric) if f} - FIELDS
        if unknown:
            raise ConfigError(f"rubric: unknown field(s) {sorted(unknown)}; use {sorted(FIELDS)}")
        if "{reference}" in self.rubric and not self.reference_column:
            raise ConfigError("rubric: uses {reference} but reference_column is not set; name the dataset column")
        for name, low in (("max_score", 0), ("timeout_s", 0), ("concurrency", 0), ("max_tokens", 0),
                          ("retries", -1), ("backoff_s", -1), ("cache_size", -1)):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= low:
                raise ConfigError(f"{name} must be {'> 0' if low == 0 else '>= 0'}, got {value!r}")

    def __call__(self, completions, prompts=None, **columns) -> list[float | None]:
        prompts = prompts if prompts is not None else [None] * len(completions)
        refs = columns[self.reference_column] if self.reference_column else [""] * len(completions)
        bodies = [self._messages(p, r, ref) for p, r, ref in zip(prompts, responses(completions, prompts), refs)]
        keys = [hashlib.sha256(json.dumps([self.model, b]).encode()).hexdigest() for b in bodies]
        todo = {k: b for k, b in zip(keys, bodies) if k not in self.cache}
        workers = min(int(self.concurrency), max(1, len(todo)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="judge") as pool:
            got = dict(zip(todo, pool.map(self._ask, todo.values())))
        self.requests += sum(attempts for _, attempts in got.values())
        self._errors, scores = [], []
        for i, key in enumerate(keys):
            if key in self.cache:
                self.cache.move_to_end(key)
                scores.append(self.cache[key])
            elif isinstance(got[key][0], float):
                scores.append(self._remember(key, got[key][0]))
            else:
                self._errors.append((i, f"judge gave no score: {got[key][0]}"))
                scores.append(None)
        return scores

    def take_errors(self) -> list[tuple[int, str]]:
        """(completion index, reason) for each completion the judge did not score in the last call (SafeReward)."""
        errors, self._errors = self._errors, []
        return errors

    def _messages(self, prompt, response: str, reference) -> list[dict]:
        user = self.rubric.format(question=last_user_text(prompt), response=response, reference=reference,
                                  answer=extract_answer(response) or "", max_score=f"{self.max_score:g}")
        system = [{"role": "system", "content": self.system}] if self.system else []
        return system + [{"role": "user", "content": user}]

    def _remember(self, key: str, score: float) -> float:
        if self.cache_size:
            self.cache[key] = score
            while len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)
        return score

    def _ask(self, messages: list[dict]) -> tuple[float | str, int]:
        """(score, or the reason there is none; attempts made), after at most 1 + retries attempts."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return parse_score(self._post(messages), self.max_score), attempt
            except JudgeError as exc:
                if not exc.retry or attempt > self.retries:
                    return f"{exc} (attempt {attempt} of {self.retries + 1})", attempt
            time.sleep(self.backoff_s * 2 ** (attempt - 1) * (1 + 0.1 * random.random()))

    def _post(self, messages: list[dict]) -> str:
        body = json.dumps({"model": self.model, "messages": messages, "max_tokens": self.max_tokens,
                           "temperature": self.temperature}).encode()
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(f"{self.url.rstrip('/')}/chat/completions", body, headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as reply:  # noqa: S310 - configured URL
                data = reply.read(MAX_REPLY_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise JudgeError(f"HTTP {exc.code} from {self.url}", retry=exc.code in RETRY_STATUS) from exc
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise JudgeError(f"{type(reason).__name__}: {reason} ({self.url})", retry=True) from exc
        if len(data) > MAX_REPLY_BYTES:
            raise JudgeError("reply larger than 1 MiB", retry=False)
        try:
            return str(json.loads(data)["choices"][0]["message"]["content"])
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise JudgeError(f"not an OpenAI chat completion: {data[:200]!r}", retry=False) from exc
