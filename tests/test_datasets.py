"""Hub dataset configs (GSM8K, NuminaMath-TIR, MATH-500) keep real `datasets.load_dataset` code; here each loads a
small local copy in its hub schema, written by the test, and yields prompts with the short reference answer."""
from __future__ import annotations

import json

import pytest

from conftest import compose_cfg
from r1pipeline.data import build_dataset

CASES = [
    # GSM8K: the answer is the number after "####" (thousands separators dropped)
    ("gsm8k", "train", lambda i: {"question": f"Tom has {i} apples and buys 1000 more. How many?",
                                  "answer": f"He has {i} + 1000 = {i + 1000}.\n#### {i + 1000:,}"},
     lambda i: str(i + 1000)),
    # NuminaMath-TIR: the answer is the last \boxed{...} of the solution, nested braces kept
    ("numina_math_tir", "train", lambda i: {"problem": f"Simplify {i}/2.", "messages": [],
                                            "solution": f"First \\boxed{{0}} is wrong; it is \\boxed{{\\frac{{{i}}}{{2}}}}."},
     lambda i: f"\\frac{{{i}}}{{2}}"),
    # MATH-500: the answer column is used as is
    ("math_500", "test", lambda i: {"problem": f"What is {i} squared?", "solution": "...", "answer": str(i * i),
                                    "subject": "Algebra", "level": 1, "unique_id": f"t/{i}.json"},
     lambda i: str(i * i)),
]


@pytest.mark.parametrize("name,split,row,answer", CASES, ids=[c[0] for c in CASES])
def test_hub_dataset_config_loads_a_local_copy_in_its_schema(tmp_path, name, split, row, answer):
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / f"{split}.jsonl").write_text("".join(json.dumps(row(i)) + "\n" for i in range(10)))
    cfg = compose_cfg([f"dataset={name}", f"dataset.path={tmp_path / 'copy'}",
                       "dataset.test_size=2"])
    data = build_dataset(cfg.dataset)
    assert (len(data["train"]), len(data["test"])) == (8, 2)
    expected = {answer(i) for i in range(10)}
    for ex in [*data["train"], *data["test"]]:
        assert ex["answer"] in expected
        assert [m["role"] for m in ex["prompt"]] == ["system", "user", "assistant"]
        assert ex["question"] in ex["prompt"][1]["content"] and "<answer>" in ex["prompt"][1]["content"]
