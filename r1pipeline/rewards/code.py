"""The code-execution reward: the program in a completion, run against its task's tests in a sandbox."""
from __future__ import annotations

import logging

from r1pipeline.errors import ConfigError
from r1pipeline.rewards import asserts, sandbox
from r1pipeline.rewards.registry import register
from r1pipeline.rewards.text import check_answer_from, extract_answer, r1_answer, responses, structured_responses

log = logging.getLogger(__name__)
LANGUAGE_TAGS = {"", "python", "python3", "py"}
_warned_tests: set[str] = set()


def extract_program(text: str, answer_from: str = "tags") -> str | None:
    """The program of a response: the last fenced code block of its answer, else the answer itself (taken as code);
    None when there is no answer. The answer is read as `answer_from` says: `tags` the last `<answer>` block,
    `strict` only the answer block of a response in R1 format (`text` from its `<think>` on), `anywhere` the answer
    block or else the last fenced block of the whole response. (str.split, not a regex: no quadratic scan of
    unclosed fences.)"""
    answer = r1_answer(text) if answer_from == "strict" else extract_answer(text)
    for source in (answer, text if answer_from == "anywhere" else None):
        if source and source.count("```") >= 2:
            parts = source.split("```")
            block = parts[len(parts) - 2 if len(parts) % 2 else len(parts) - 3]  # last complete pair
            first, _, rest = block.partition("\n")
            return rest if first.strip().lower() in LANGUAGE_TAGS else block
    return answer or None


@register("code")
class CodeReward:
    """Share of the task's tests that the completion's program passes, run in the sandbox (`sandbox.py`).

    score = tests passed / tests. The program is `extract_program(response, answer_from)` (`tags`, the default: the
    answer block; `strict`: only in R1 format, as the `correct` reward asks; `anywhere`: else the last code fence); the tests are the assert statements
    in `tests_column` (MBPP: `test_list`), after the optional `setup_column` code. Pass/fail is decided in the
    trainer's process from the plain values the sandbox sends back (`asserts.py`), so a program can supply values
    but not a verdict. No program -> 0.0. A program that the sandbox stops (wall-clock timeout, CPU, memory, output
    size, a forbidden operation such as a socket, a process, a file outside its directory or reading the
    environment, an early exit, a crash) scores 0.0 and is counted in `rewards/code/errors` with the reason.
    Range [0, 1].

    Example, tests ["assert add(1, 2) == 3", "assert add(2, 2) == 4"]:
      "<answer>```python\\ndef add(a, b):\\n    return a + b\\n```</answer>" -> 1.0
      "<answer>```python\\ndef add(a, b):\\n    return 3\\n```</answer>" -> 0.5
      "<answer>```python\\nimport os\\nos.fork()\\n```</answer>" -> 0.0, one error ("violation: os.fork")
    """

    required_columns = ("tests_column",)

    def __init__(self, tests_column: str = "test_list", setup_column: str | None = "test_setup_code",
                 timeout_s: float = 10.0, cpu_s: int = 5, memory_mb: int = 512, processes: int = 16,
                 open_files: int = 64, file_kb: int = 1024, workers: int = 4, answer_from: str = "tags"):
        self.limits = sandbox.Limits(timeout_s, cpu_s, memory_mb, processes, open_files, file_kb)
        self.limits.check()
        if not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"workers must be a positive integer, got {workers!r}")
        self.tests_column, self.setup_column, self.workers = tests_column, setup_column, workers
        self.answer_from = check_answer_from(answer_from, "code")
        self._errors: list[tuple[int, str]] = []

    def __call__(self, completions, prompts=None, **columns) -> list[float]:
        tests = columns[self.tests_column]
        setups = columns.get(self.setup_column) if self.setup_column else None
        setups = setups if setups is not None else [""] * len(completions)
        texts = (structured_responses if self.answer_from == "strict" else responses)(completions, prompts)
        programs = [extract_program(t, self.answer_from) for t in texts]
        plans = [self._plans(t) for t in tests]
        todo = [i for i, p in enumerate(programs) if p is not None]
        jobs = [(programs[i], setups[i] or "", [c for plan in plans[i] if plan for c in plan.candidates]) for i in todo]
        outcomes = dict(zip(todo, sandbox.run_many(jobs, self.limits, self.workers)))
        self._errors = []
        scores = []
        for i in range(len(completions)):
            outcome = outcomes.get(i)
            if outcome is not None and outcome.error is not None:
                self._errors.append((i, f"{outcome.error}: {outcome.detail}"[:300]))
            scores.append(self._score(plans[i], outcome))
        return scores

    def take_errors(self) -> list[tuple[int, str]]:
        """(completion index, reason) for each program the sandbox stopped in the last call (read by SafeReward)."""
        errors, self._errors = self._errors, []
        return errors

    @staticmethod
    def _plans(tests) -> list[asserts.Plan | None]:
        plans = []
        for test in list(tests or []):
            try:
                plans.append(asserts.compile_assert(str(test)))
            except asserts.UnsupportedTest as exc:
                if test not in _warned_tests:
                    _warned_tests.add(test)
                    log.warning("code reward: dataset test %r is unsupported (%s); it counts as failed", test, exc)
                plans.append(None)
        return plans

    @staticmethod
    def _score(plans: list, outcome: sandbox.Outcome | None) -> float:
        if not plans or outcome is None or outcome.error is not None or outcome.program_error is not None:
            return 0.0
        passed, start = 0, 0
        for plan in plans:
            if plan is None:
                continue
            n = len(plan.candidates)
            passed += asserts.passes(plan, outcome.values[start:start + n])
            start += n
        return passed / len(plans)
