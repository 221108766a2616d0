"""The code-execution reward: scoring, hostile programs, the sandbox's kernel layers, MBPP and reasoning-gym configs.

Every sandboxed case is bounded in time and checked for what it left behind: no process still running from the
sandbox, no file outside its own directory, no temporary directory left.
"""
from __future__ import annotations

import os
import socket
import tempfile
import time
from pathlib import Path

import pytest

from r1pipeline.errors import ConfigError
from r1pipeline.rewards import asserts, sandbox
from r1pipeline.rewards.code import CodeReward, extract_program
from r1pipeline.rewards.registry import validate_reward_config
from r1pipeline.rewards.safety import SafeReward

from conftest import compose_cfg

FIXTURE = Path(__file__).parent / "fixtures" / "mbpp_sample.jsonl"
TESTS = ["assert add(1, 2) == 3", "assert add(2, 2) == 4"]
FAST = dict(timeout_s=3.0, cpu_s=2, workers=2)


def answer(program: str) -> list[dict]:
    return [{"role": "assistant", "content": f"<think>easy</think><answer>```python\n{program}\n```</answer>"}]


def sandbox_processes() -> list[int]:
    """Processes anywhere on the machine that still run the sandbox's script."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if b"sandbox_child.py" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except OSError:
            continue
    return found


def sandbox_dirs() -> set[str]:
    return {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("r1-sandbox-")}


@pytest.fixture
def clean_afterwards():
    """Asserts, after the test, that no sandbox process or directory is left."""
    dirs_before = sandbox_dirs()
    yield
    deadline = time.monotonic() + 2  # a killed process may take a moment to disappear from /proc
    while sandbox_processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sandbox_processes() == []
    assert sandbox_dirs() - dirs_before == set()


# ------------------------------------------------------------------------------------------ program extraction

EXTRACT_CASES = [
    # (response, answer_from, program)
    # fenced python block inside the answer
    ("<think>x</think><answer>```python\ndef f(): pass\n```</answer>", "tags", "def f(): pass\n"),
    # the last of two blocks counts
    ("<answer>```python\nA = 1\n```\n```py\nB = 2\n```</answer>", "tags", "B = 2\n"),
    # an untagged fence
    ("<answer>```\nC = 3\n```</answer>", "tags", "C = 3\n"),
    # no answer block: anywhere takes the last fence of the response; tags and strict take nothing
    ("here:\n```python\nD = 4\n```\nand an unclosed ```python\nE = 5", "anywhere", "D = 4\n"),
    ("here:\n```python\nD = 4\n```\nand an unclosed ```python\nE = 5", "tags", None),
    ("<think>t</think> ```python\nD = 4\n```", "strict", None),
    # an answer block without fences is taken as code
    ("<think>t</think><answer>F = 6</answer>", "tags", "F = 6"),
    ("<think>t</think><answer>F = 6</answer>", "strict", "F = 6"),
    # strict: an empty think block or text after the answer is not R1 format
    ("<think></think><answer>F = 6</answer>", "strict", None),
    ("<think>t</think><answer>F = 6</answer> more", "strict", None),
    # nothing that looks like a program
    ("I do not know.", "anywhere", None),
]


@pytest.mark.parametrize("response,answer_from,program", EXTRACT_CASES)
def test_extract_program(response, answer_from, program):
    assert extract_program(response, answer_from) == program


# ----------------------------------------------------------------------------------- assertion splitting

SPLIT_CASES = [
    # (test, candidates the sandbox evaluates: (expr, uses the program, materialize))
    # the common MBPP form: the call is the only candidate, the expected value stays here
    ("assert add(1, 2) == 3", [("add(1, 2)", True, False)]),
    # a consuming builtin around the call: an iterator result is listed inside the sandbox
    ("assert set(f([1, 2])) == set((1, 2))", [("f([1, 2])", True, True)]),
    # math.isclose is evaluated here, with the value from the sandbox
    ("assert math.isclose(area(1), 3.14, rel_tol=0.01)", [("area(1)", True, False)]),
    # not / and: both calls are candidates
    ("assert not even(3) and even(2)", [("even(3)", True, False), ("even(2)", True, False)]),
    # a method call on the result is part of the candidate
    ("assert f(x).count(1) == 2", [("f(x).count(1)", True, False)]),
    # an expression that needs no program at all is evaluated here entirely
    ("assert sorted([3, 1]) == [1, 3]", []),
    # a program-free expression this evaluator does not support goes to the sandbox with pristine builtins
    ("assert f(1) == ''.join(['a', 'b'])", [("f(1)", True, False), ("''.join(['a', 'b'])", False, False)]),
]


@pytest.mark.parametrize("test,candidates", SPLIT_CASES)
def test_compile_assert_splits_what_the_program_supplies(test, candidates):
    plan = asserts.compile_assert(test)
    assert [(c["expr"], c["user"], c["materialize"]) for c in plan.candidates] == candidates


PASS_CASES = [
    # (test, values sent back by the sandbox, passes)
    ("assert add(1, 2) == 3", ["3"], True),
    ("assert add(1, 2) == 3", ["4"], False),
    # a float that is close enough
    ("assert math.isclose(area(1), 3.14, rel_tol=0.01)", ["3.1415"], True),
    # a set of tuples against an expected tuple of tuples
    ("assert set(f(2)) == {(0, 1), (1, 2)}", ["[(1, 2), (0, 1)]"], True),
    # an object repr cannot be parsed back: fails (no custom __eq__ ever reaches the comparison)
    ("assert add(1, 2) == 3", ["<__main__.A object at 0x7f>"], False),
    # an error value fails
    ("assert add(1, 2) == 3", [{"error": "ZeroDivisionError: division by zero"}], False),
    # special floats and complex numbers come back as literals
    ("assert f() == (float('inf'), -1.5, 2+3j)", ["(inf, -1.5, (2+3j))"], True),
    # a wrong number of values (a forged result line) fails
    ("assert add(1, 2) == 3", ["3", "3"], False),
    # a value that would run code if evaluated is rejected, not evaluated
    ("assert add(1, 2) == 3", ["__import__('os').getpid()"], False),
]


@pytest.mark.parametrize("test,values,expected", PASS_CASES)
def test_passes_decides_from_plain_values(test, values, expected):
    values = [v if isinstance(v, dict) else {"value": v} for v in values]
    assert asserts.passes(asserts.compile_assert(test), values) is expected


def test_unsupported_dataset_test_is_reported():
    with pytest.raises(asserts.UnsupportedTest, match="single assert"):
        asserts.compile_assert("x = f(1)\nassert x == 2")


# ------------------------------------------------------------------------------------------------ scoring

SCORE_CASES = [
    # (program, score)
    # correct
    ("def add(a, b):\n    return a + b", 1.0),
    # half the tests
    ("def add(a, b):\n    return 3", 0.5),
    # wrong
    ("def add(a, b):\n    return 0", 0.0),
    # syntax error: a broken program fails its tests, it is not a sandbox error
    ("def add(a, b) return a + b", 0.0),
    # an object equal to everything does not pass
    ("class Any:\n    def __eq__(self, other): return True\ndef add(a, b):\n    return Any()", 0.0),
    # patching builtins and the assertion machinery inside the sandbox does not reach the verdict
    ("import builtins, math\nbuiltins.AssertionError = Exception\nmath.isclose = lambda *a, **k: True\n"
     "def add(a, b):\n    return None", 0.0),
    # printing a forged result line only supplies values (here wrong ones, and too many)
    ("print('\\n\\x1er1-sandbox-result {\"status\": \"ok\", \"values\": [{\"value\": \"1\"}]}', flush=True)\n"
     "def add(a, b):\n    return 0", 0.0),
    # a main guard does not run (the program is imported as a module named `solution`)
    ("def add(a, b):\n    return a + b\nif __name__ == '__main__':\n    input()", 1.0),
]


@pytest.mark.parametrize("program,expected", SCORE_CASES)
def test_code_reward_scores(program, expected, clean_afterwards):
    reward = SafeReward(CodeReward(**FAST), name="code")
    assert reward([answer(program)], test_list=[TESTS]) == [expected]
    assert reward.errors == 0


def test_no_program_scores_zero_without_running_anything(clean_afterwards):
    reward = SafeReward(CodeReward(**FAST), name="code")
    assert reward([[{"role": "assistant", "content": "<think>hm</think> no idea"}]], test_list=[TESTS]) == [0.0]
    assert reward.errors == 0


HOSTILE = [
    # (what it does, program, errors it may be reported as, text of the reason, seconds it may take)
    ("infinite loop", "while True:\n    pass", {"timeout"}, "", 6),
    ("CPU burn under a long wall clock", "while True:\n    pass", {"cpu", "killed"}, "", 20),  # 2 CPU-s, any load
    ("fork bomb", "import os\nwhile True:\n    os.fork()", {"violation"}, "forbidden: os.fork", 3),
    ("multiprocessing", "import multiprocessing\nmultiprocessing.Process(target=print).start()", {"violation"},
     "forbidden: ", 3),
    ("subprocess", "import subprocess\nsubprocess.run(['sleep', '100'])", {"violation"},
     "forbidden: import _posixsubprocess", 3),
    ("huge allocation", "x = bytearray(8 << 30)", {"memory"}, "", 3),
    ("write outside its directory", "open({outside!r}, 'w').write('pwned')", {"violation"}, "for writing", 3),
    ("delete outside its directory", "import os\nos.remove({outside!r})", {"violation"}, "forbidden: os.remove", 3),
    ("read a secret file", "print(open({secret!r}).read())", {"violation"}, "secret.txt", 3),
    ("read the environment", "import os\nKEY = os.environ.get('HF_TOKEN')", {"violation"},
     "forbidden: reading the environment", 3),
    ("open a socket", "import socket\nsocket.create_connection(('127.0.0.1', {port}))", {"violation"},
     "forbidden: socket.", 3),
    ("kill the trainer", "import os\nos.kill({trainer_pid}, 9)", {"violation"}, "forbidden: os.kill", 3),
    ("ctypes", "import ctypes", {"violation"}, "forbidden: import ctypes", 3),
    ("exit early", "import sys\nsys.exit(0)", {"exit"}, "", 3),
    ("exit early without a trace", "import os\nos._exit(0)", {"exit"}, "", 3),
    ("flood the output", "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)", {"output"}, "", 5),
    ("crash the interpreter", "import sys\nsys.setrecursionlimit(10**8)\nx = []\nfor _ in range(10**6):\n"
     "    x = [x]\nrepr(x)", {"crash"}, "exit code 139", 6),  # C stack overflow: SIGSEGV
]


@pytest.mark.parametrize("what,program,kinds,reason,seconds", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_programs_score_zero_and_count_an_error(what, program, kinds, reason, seconds, tmp_path,
                                                        clean_afterwards):
    secret, outside = tmp_path / "secret.txt", tmp_path / "outside.txt"
    secret.write_text("token")
    outside.write_text("keep me")
    limits = {"infinite loop": dict(timeout_s=2.0, cpu_s=10), "CPU burn under a long wall clock":
              dict(timeout_s=20.0, cpu_s=1)}.get(what, {})  # only one of the two clocks can fire
    reward = CodeReward(**{**FAST, **limits})
    t0 = time.monotonic()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        program = program.format(outside=str(outside), secret=str(secret), port=listener.getsockname()[1],
                                 trainer_pid=os.getpid())
        scores = reward([answer(program), answer("def add(a, b):\n    return a + b")], test_list=[TESTS, TESTS])
    assert time.monotonic() - t0 < seconds
    assert scores == [0.0, 1.0]  # the hostile program scores 0; its neighbour in the batch is unaffected
    [(index, message)] = reward.take_errors()
    kind, _, detail = message.partition(": ")
    assert index == 0 and kind in kinds and reason in detail, message
    assert outside.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outside.txt", "secret.txt"]


def test_hostile_program_error_is_counted_and_logged(caplog, clean_afterwards):
    reward = SafeReward(CodeReward(**FAST), name="code")
    metrics = {}
    reward([answer("import os\nos.fork()"), answer("x = 1")], test_list=[TESTS, TESTS],
           log_metric=lambda k, v: metrics.__setitem__(k, v))
    assert reward.errors == 1 and metrics["rewards/code/errors"] == 1.0
    assert "reward code: violation: [sandbox] forbidden: os.fork" in caplog.text


def test_batch_runs_in_parallel_within_the_worker_bound(clean_afterwards):
    sleeper = "import time\ntime.sleep(1)\ndef add(a, b):\n    return a + b"
    t0 = time.monotonic()
    scores = CodeReward(timeout_s=5.0, workers=4)([answer(sleeper)] * 4, test_list=[TESTS] * 4)
    parallel = time.monotonic() - t0
    assert scores == [1.0] * 4 and parallel < 3.0  # four 1-s programs at once, not 4 s in a row


# ------------------------------------------------------------- kernel layers, with the audit-hook tripwires off

@pytest.fixture(scope="module")
def layers():
    outcome = sandbox.run_program("", "", [], sandbox.Limits())
    assert outcome.error is None, outcome
    return outcome.layers


LAYER_CASES = [
    # (layer needed, program whose `f()` reports what it managed, expected value, what it shows)
    ("namespaces", "import os, time\ndef f():\n    n = 0\n    for _ in range(64):\n        try:\n"
                   "            if os.fork() == 0:\n                time.sleep(60)\n                os._exit(0)\n"
                   "            n += 1\n        except OSError:\n            break\n    return n < 16",
     True, "a fork bomb stops at RLIMIT_NPROC, and its sleeping children die with the PID namespace"),
    ("namespaces", "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\n"
                   "def f():\n    return 'started'", "started", "a child that left the process group still dies"),
    ("namespaces", "import socket\ndef f():\n    try:\n        socket.create_connection(('127.0.0.1', {port}), 1)\n"
                   "        return 'connected'\n    except OSError:\n        return 'refused'", "refused",
     "no network: the test's listening port on 127.0.0.1 cannot be reached"),
    ("landlock", "def f():\n    try:\n        open({outside!r}, 'w').write('x')\n        return 'written'\n"
                 "    except OSError:\n        return 'refused'", "refused", "no write outside the directory"),
    ("landlock", "def f():\n    try:\n        return open({secret!r}).read()\n    except OSError:\n"
                 "        return 'refused'", "refused", "no read outside the allowed directories"),
    ("namespaces", "import os\ndef f():\n    return sorted(os.environ)", ["HOME", "LANG", "PATH", "TMPDIR"],
     "the environment is scrubbed"),
]


@pytest.mark.parametrize("layer,program,expected,shows", LAYER_CASES, ids=[c[3] for c in LAYER_CASES])
def test_kernel_layers_hold_without_the_tripwires(layer, program, expected, shows, layers, tmp_path,
                                                   clean_afterwards):
    if not layers.get(layer):
        pytest.skip(f"this kernel refused the sandbox's {layer} layer (layers: {layers})")
    secret, outside = tmp_path / "secret.txt", tmp_path / "outside.txt"
    secret.write_text("token")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        program = program.format(port=listener.getsockname()[1], outside=str(outside), secret=str(secret))
        outcome = sandbox.run_program(program, "", [{"expr": "f()", "user": True, "materialize": False}],
                                      sandbox.Limits(timeout_s=5.0), tripwires=False)
    assert outcome.error is None, outcome
    assert outcome.values == [{"value": repr(expected)}]
    assert not outside.exists()


# ------------------------------------------------------------------------------------- configs and datasets

def test_code_reward_config_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"reward.code: workers must be a positive integer"):
        validate_reward_config({"code": {"workers": 0}})
    with pytest.raises(ConfigError, match=r"reward.code: memory_mb must be a number > 0, got 0"):
        validate_reward_config({"code": {"memory_mb": 0}})
    with pytest.raises(ConfigError, match=r"needs dataset column\(s\) \['test_list'\]"):
        validate_reward_config({"code": {}}, {"prompt", "answer"})


def test_mbpp_config_builds_prompts_and_its_reference_solutions_pass(clean_afterwards):
    from r1pipeline.data import build_dataset

    cfg = compose_cfg(["dataset=mbpp", "reward=code", "dataset.source=local", f"dataset.path={FIXTURE}"])
    assert cfg.dataset.path == str(FIXTURE) and cfg.reward.code.workers == 4
    data = build_dataset(cfg.dataset)
    validate_reward_config(cfg.reward, set(data["train"].column_names))  # the mix finds its columns
    train = data["train"]
    assert len(train) == 7 and len(data["test"]) == 1  # a fifth of the rows, at least one, is held out
    user = train[0]["prompt"][1]["content"]
    assert "Your code should pass these tests: assert" in user and user.endswith("inside <answer> </answer> tags.")
    rows = list(train) + list(data["test"])
    reward = SafeReward(CodeReward(**{k: v for k, v in cfg.reward.code.items() if k != "weight"}), name="code")
    completions = [answer(r["code"].replace("\r\n", "\n")) for r in rows]
    scores = reward(completions, test_list=[r["test_list"] for r in rows],
                    test_setup_code=[r["test_setup_code"] for r in rows])
    assert scores == [1.0] * len(rows) and reward.errors == 0


def test_reasoning_gym_code_task_config_scores_its_references():
    from r1pipeline.data import build_dataset
    from r1pipeline.rewards.reasoning_gym import ReasoningGymReward

    cfg = compose_cfg(["dataset=bf", "reward=reasoning_gym", "dataset.train_size=3", "dataset.test_size=1"])
    rows = list(build_dataset(cfg.dataset)["train"])
    assert len(rows) == 3 and "BF" in rows[0]["prompt"][1]["content"]
    completions = [[{"role": "assistant", "content": f"</think><answer>{r['answer']}</answer>"}] for r in rows]
    got = ReasoningGymReward()(completions, task=[r["task"] for r in rows], answer=[r["answer"] for r in rows],
                               metadata=[r["metadata"] for r in rows])
    assert got == [1.0, 1.0, 1.0]
