"""Small local copies of the hub datasets in their hub schemas, one file per split the hub has, so the real
`datasets.load_dataset` code runs offline. Row i of every split is built from the same function. Row 0 is in the
train split twice and starts every test split: a duplicate inside train (which carving a test split out of train may
put on both sides) and a question shared by two splits, as hub datasets sometimes have."""
from __future__ import annotations

import json
from pathlib import Path

DATASETS = sorted(p.stem for p in (Path(__file__).resolve().parent.parent / "conf" / "dataset").glob("*.yaml"))

# dataset config -> (row builder, reference answer of row i, splits the hub dataset has)
HUB = {
    # GSM8K: the answer is the number after "####" (thousands separators dropped)
    "gsm8k": (lambda i: {"question": f"Tom has {i} apples and buys 1000 more. How many?",
                         "answer": f"He has {i} + 1000 = {i + 1000}.\n#### {i + 1000:,}"},
              lambda i: str(i + 1000), ("train", "test")),
    # NuminaMath-TIR: the answer is the last \boxed{...} of the solution, nested braces kept
    "numina_math_tir": (lambda i: {"problem": f"What is {i} plus one half?", "messages": [],
                                   "solution": f"First \\boxed{{0}} is wrong; it is \\boxed{{\\frac{{{2 * i + 1}}}{{2}}}}."},
                        lambda i: f"\\frac{{{2 * i + 1}}}{{2}}", ("train", "test")),
    # MATH-500: the answer column is used as is; a test set only
    "math_500": (lambda i: {"problem": f"What is {i} squared?", "solution": "...", "answer": str(i * i),
                            "subject": "Algebra", "level": 1, "unique_id": f"t/{i}.json"},
                 lambda i: str(i * i), ("test",)),
    # MBPP: a function and its asserts; the reference answer is the program (`code`)
    "mbpp": (lambda i: {"task_id": i, "text": f"Write a function to add {i} to a number.",
                        "code": f"def add_{i}(a):\r\n    return a + {i}",
                        "test_list": [f"assert add_{i}(1) == {i + 1}", f"assert add_{i}(0) == {i}"],
                        "test_setup_code": "", "challenge_test_list": []},
             lambda i: f"def add_{i}(a):\r\n    return a + {i}", ("train", "test")),
    # TinyZero's Countdown (nums, target; no reference answer): target = the sum of the numbers; train only
    "countdown_tasks_3to4": (lambda i: {"nums": [i + 1, i + 2, 3], "target": 2 * i + 6},
                             lambda i: f"{i + 1} + {i + 2} + 3", ("train",)),
}
TEST_OFFSET = 100  # train rows are i = 0, 0, 1, 2, ...; test rows i = 0, 100, 101, ...


def indices(split: str, n: int) -> list[int]:
    return [0, *range(n - 1)] if split == "train" else [0, *range(TEST_OFFSET, TEST_OFFSET + n - 1)]


def write_local_copy(directory: Path, name: str, n: int = 10) -> Path:
    """`directory/<split>.jsonl` for every split of the hub dataset `name`, n rows each; returns the directory."""
    row, _, splits = HUB[name]
    directory.mkdir(parents=True, exist_ok=True)
    for split in splits:
        (directory / f"{split}.jsonl").write_text("".join(json.dumps(row(i)) + "\n" for i in indices(split, n)))
    return directory


def write_stratos_copy(path: Path) -> Path:
    """Two rows in Bespoke-Stratos-17k's schema (system, conversations with from/value), the cold-start `load`
    source; returns the file."""
    rows = [{"system": "Think first.", "conversations": [
        {"from": "user", "value": f"What is {a} + {a}?"},
        {"from": "assistant", "value": f"<|begin_of_thought|>\n{a} plus {a} is {2 * a}.\n<|end_of_thought|>\n\n"
                                       f"<|begin_of_solution|>\n\\boxed{{{2 * a}}}\n<|end_of_solution|>"}]}
        for a in (2, 3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
