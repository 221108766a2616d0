"""The wrapper every configured reward runs inside: it never lets a reward crash training.

An exception inside a reward scores 0.0 for the batch's affected completions, is counted in the metric
`rewards/<name>/errors`, and the offending sample is written to the run's log. Non-finite scores become 0.0 and
are counted the same way, and so are the failures a reward handles itself (the code sandbox, the judge) and lists in
`take_errors()`. Per-batch min/max are reported through TRL's `log_metric` hook (TRL itself logs each
reward's mean and std). Every scored batch goes to the stage's recorder, when it has one (callbacks.SampleRecorder).
"""
from __future__ import annotations

import logging
import math

from r1pipeline.rewards.text import completion_text

log = logging.getLogger(__name__)


class SafeReward:
    def __init__(self, reward, name: str, recorder=None):
        self.reward = reward
        self.name = name
        self.__name__ = name  # TRL names the metric `rewards/<__name__>/mean`
        self.recorder = recorder  # optional: keeps a few scored samples for samples.jsonl
        self.errors = 0

    def _one(self, i, completions, prompts, kwargs):
        sub = {k: [v[i]] if isinstance(v, list) and len(v) == len(completions) else v for k, v in kwargs.items()}
        score = self.reward([completions[i]], prompts=[prompts[i]] if prompts else None, **sub)[0]
        self._count_absorbed(completions, offset=i)
        return score

    def _count_absorbed(self, completions, offset: int = 0) -> None:
        """Count the failures a reward handled itself (a sandboxed program stopped, a judge that did not answer):
        it scored them 0.0 or None and lists them in `take_errors()`."""
        for j, reason in getattr(self.reward, "take_errors", list)():
            self.errors += 1
            log.warning("reward %s: %s on completion %r", self.name, reason,
                        completion_text(completions[offset + j])[:500])

    def __call__(self, completions, prompts=None, **kwargs) -> list[float | None]:
        log_metric = kwargs.pop("log_metric", None)
        kwargs.pop("log_extra", None)
        errors_before = self.errors
        try:
            scores = list(self.reward(completions, prompts=prompts, **kwargs))
            self._count_absorbed(completions)
            if len(scores) != len(completions):
                raise ValueError(f"returned {len(scores)} scores for {len(completions)} completions")
        except Exception:  # noqa: BLE001 - find the offending sample(s) one by one
            scores = []
            for i in range(len(completions)):
                try:
                    scores.append(self._one(i, completions, prompts, kwargs))
                except Exception as exc:  # noqa: BLE001
                    scores.append(self._fail(exc, completions[i]))
        clean = []
        for s, c in zip(scores, completions):
            if s is None:
                clean.append(None)
            elif not isinstance(s, (int, float)) or not math.isfinite(s):
                clean.append(self._fail(ValueError(f"non-finite score {s!r}"), c))
            else:
                clean.append(float(s))
        if log_metric is not None:
            valid = [s for s in clean if s is not None]
            log_metric(f"rewards/{self.name}/errors", float(self.errors - errors_before))
            if valid:
                log_metric(f"rewards/{self.name}/min", min(valid))
                log_metric(f"rewards/{self.name}/max", max(valid))
        if self.recorder is not None:
            state = kwargs.get("trainer_state")
            self.recorder.record(self.name, getattr(state, "global_step", 0), prompts, completions, clean, log_metric)
        return clean

    def _fail(self, exc: Exception, completion) -> float:
        self.errors += 1
        log.warning("reward %s failed (%s: %s) on completion %r; scored 0.0",
                    self.name, type(exc).__name__, exc, completion_text(completion)[:500])
        return 0.0
