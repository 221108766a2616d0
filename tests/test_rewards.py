"""Each reward's score on real-looking completions: correct, wrong, malformed and reward-hacking ones.

Completions are conversational (a list with one assistant message) and prompts end with the Countdown prefill
"Let me solve this step by step.\\n<think>", as in training, unless a case says otherwise.
"""
from __future__ import annotations

import json

import pytest

from r1pipeline.rewards.registry import REWARDS, register, reward_names

PREFILL = "Let me solve this step by step.\n<think>"
PROMPT = [{"role": "system", "content": "You are a helpful assistant."},
          {"role": "user", "content": "What is one half written as a decimal? Put it in <answer> </answer> tags."},
          {"role": "assistant", "content": PREFILL}]


def conv(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def score(name: str, texts: list[str], params: dict | None = None, prompt=PROMPT, **columns) -> list:
    reward_names()  # imports every reward module
    reward = REWARDS[name](**(params or {}))
    return reward([conv(t) for t in texts], prompts=[prompt] * len(texts), **columns)


# ------------------------------------------------------------------------------------------------ accuracy

ACCURACY_CASES = [
    # (completion after the prefill, reference, answer_from, expected)
    # correct, plain decimal vs LaTeX fraction reference
    (" 1/2 = 0.5</think>\n<answer>0.5</answer>", r"\frac{1}{2}", "tags", 1.0),
    # correct, boxed LaTeX inside the answer block
    (" half</think><answer>$\\boxed{\\frac{1}{2}}$</answer>", "0.5", "tags", 1.0),
    # correct, integer with spaces
    (" 12+71+33</think><answer> 116 </answer>", "116", "tags", 1.0),
    # wrong value
    (" 1/3?</think><answer>0.33</answer>", r"\frac{1}{2}", "tags", 0.0),
    # the last answer block counts: a wrong final answer after a right one is wrong
    ("</think><answer>0.5</answer><answer>7</answer>", "0.5", "tags", 0.0),
    # no answer block: a boxed value outside the tags is not an answer under `tags` ...
    (" so the result is \\boxed{0.5}</think>", "1/2", "tags", 0.0),
    # ... but is the final answer format-free
    (" so the result is \\boxed{0.5}</think>", "1/2", "anywhere", 1.0),
    # format-free without a box: the last number of the response
    (" half of one is 0.5</think> I am sure.", "1/2", "anywhere", 1.0),
    # format-free: an answer block still wins over a later number
    (" x</think><answer>0.5</answer> (not 3)", "1/2", "anywhere", 1.0),
    # strict: the right answer after an empty think block is not in R1 format
    ("</think><answer>0.5</answer>", "0.5", "strict", 0.0),
    # strict: R1 format, right answer (the prefill's "Let me solve this step by step." preamble is ours)
    (" halve it</think> <answer>0.5</answer>", "0.5", "strict", 1.0),
    # hedged: several numbers in the block; math-verify alone would read the last one and pay
    (" x</think><answer>7919, 0.5</answer>", "0.5", "tags", 0.0),
    # hedged with words
    (" x</think><answer>0.5 or 3</answer>", "3", "tags", 0.0),
    # a unit with an exponent is not a second number
    (" x</think><answer>18 \\text{ cm}^2</answer>", "18", "tags", 1.0),
    # malformed: unclosed answer block, no boxed value
    ("</think><answer>0.5", "0.5", "tags", 0.0),
    # hacked: words instead of math in the answer
    ("</think><answer>the answer is correct</answer>", "0.5", "tags", 0.0),
    # empty answer block
    ("</think><answer></answer>", "0.5", "tags", 0.0),
    # reference without any parsable math: skipped (None), not a made-up score
    ("</think><answer>0.5</answer>", "see the figure", "tags", None),
    # ... also when the response gave no answer
    (" no idea</think>", "see the figure", "tags", None),
    # empty reference: skipped
    ("</think><answer>0.5</answer>", "", "tags", None),
]


@pytest.mark.parametrize("completion,reference,answer_from,expected", ACCURACY_CASES)
def test_accuracy(completion, reference, answer_from, expected):
    assert score("accuracy", [completion], {"answer_from": answer_from}, answer=[reference]) == [expected]


def test_accuracy_reads_the_configured_reference_column():
    # MATH-style rows carry the worked solution in `solution`; its boxed value is the reference
    got = score("accuracy", ["</think><answer>\\frac{3}{4}</answer>", "</think><answer>3/5</answer>"],
                {"reference_column": "solution"}, solution=["We get $\\boxed{\\frac34}$."] * 2)
    assert got == [1.0, 0.0]


def test_accuracy_missing_reference_column_raises_for_safe_reward_to_count():
    with pytest.raises(KeyError, match="solution"):
        score("accuracy", ["</think><answer>1</answer>"], {"reference_column": "solution"}, answer=["1"])


COSINE_CASES = [
    # (completion, completion length in tokens, expected) with max_len 100, reference 0.5
    # correct and instant: the best score
    ("</think><answer>0.5</answer>", 0, 1.0),
    # correct at half max_len: midway between 0.5 and 1.0
    ("</think><answer>0.5</answer>", 50, 0.75),
    # correct at (or beyond) max_len: the lowest correct score
    ("</think><answer>0.5</answer>", 150, 0.5),
    # wrong and instant: the harshest penalty
    ("</think><answer>2</answer>", 0, -1.0),
    # wrong after thinking to max_len: penalized least
    ("</think><answer>2</answer>", 100, -0.5),
    # malformed (no answer at all) counts as wrong
    (" I give up", 50, -0.75),
]


@pytest.mark.parametrize("completion,length,expected", COSINE_CASES)
def test_cosine(completion, length, expected):
    got = score("cosine", [completion], {"max_len": 100}, answer=["0.5"], completion_ids=[[1] * length])
    assert got == [pytest.approx(expected)]


def test_cosine_skips_when_the_reference_is_unparsable_and_counts_characters_without_token_ids():
    assert score("cosine", ["</think><answer>1</answer>"], answer=["no math here"]) == [None]
    # no completion_ids: length is in characters (here 28 of max_len 28 -> lowest correct score)
    assert score("cosine", ["</think><answer>0.5</answer>"], {"max_len": 28}, answer=["0.5"]) == [0.5]


# ------------------------------------------------------------------------------------------------ structure

FORMAT_CASES = [
    # (completion after the "...\n<think>" prefill, format, tag_count)
    # the intended shape
    (" 3+5=8, 8*2=16</think>\n<answer>(3 + 5) * 2</answer>", 1.0, 1.0),
    # trailing whitespace is fine
    (" add</think> <answer>16</answer>\n\n", 1.0, 1.0),
    # text after the answer block
    (" add</think><answer>16</answer> Hope this helps!", 0.0, 1.0),
    # no answer block
    (" add then multiply</think> The answer is 16.", 0.0, 0.5),
    # answer but the think block never closed (closing tag missing)
    (" add <answer>16</answer>", 0.0, 0.75),
    # empty think block
    ("</think><answer>16</answer>", 0.0, 1.0),
    # repeated blocks earn nothing extra: two think/answer pairs
    (" a</think><answer>1</answer><think>b</think><answer>16</answer>", 0.0, 0.0),
    # a second think block nested inside the first
    (" a <think> b </think></think><answer>16</answer>", 0.0, 0.5),
    # tags out of order: answer before think closes
    (" a <answer>16</answer></think>", 0.0, 0.5),
    # hacked: the completion opens its own think block after the prefill (two <think>)
    ("<think> a</think><answer>16</answer>", 0.0, 0.75),
]


@pytest.mark.parametrize("completion,expected_format,expected_tags", FORMAT_CASES)
def test_format_and_tag_count(completion, expected_format, expected_tags):
    assert score("format", [completion]) == [expected_format]
    assert score("tag_count", [completion]) == [expected_tags]


def test_prefix_tag_count_gives_no_credit_past_a_skipped_tag():
    """The shortcut SmolLM2 learned on CPU: close with </answer> straight after thinking (no </think>, no <answer>)."""
    shortcut, missing_close, whole = " 8 - 2 = 6. </answer>", " add <answer>16</answer>", " a</think><answer>6</answer>"
    assert score("tag_count", [shortcut, missing_close, whole]) == [0.5, 0.75, 1.0]
    assert score("tag_count", [shortcut, missing_close, whole], {"prefix": True}) == [0.25, 0.25, 1.0]


def test_format_without_prefill_needs_the_think_tag_first():
    plain = [{"role": "user", "content": "2+2?"}]
    assert score("format", ["<think>2+2=4</think><answer>4</answer>", "Sure! <think>x</think><answer>4</answer>"],
                 prompt=plain) == [1.0, 0.0]


STEPS_CASES = [
    # (completion, expected) with min_steps 3
    # explicit "Step n:" markers
    (" Step 1: add 3 and 5. Step 2: multiply by 2. Step 3: check.</think>", 1.0),
    # numbered lines
    ("\n1. add\n2. multiply\n</think>", 2 / 3),
    # bullets and sequencing words
    ("\n- add\n* multiply\nFinally, check.</think>", 1.0),
    # sequencing word without its comma, and a number mid-line: not steps
    (" First we add 3. then 2. done</think>", 0.0),
    # no structure at all
    (" 3+5=8</think><answer>8</answer>", 0.0),
    # more than min_steps is capped at 1
    (" Step 1: a Step 2: b Step 3: c Step 4: d</think>", 1.0),
]


@pytest.mark.parametrize("completion,expected", STEPS_CASES)
def test_reasoning_steps(completion, expected):
    assert score("reasoning_steps", [completion]) == [pytest.approx(expected)]


REPETITION_CASES = [
    # (completion, params, expected)
    # no repeated trigram
    ("add three and five then multiply by two", {}, 0.0),
    # "a b c a b c": 4 trigrams, 3 distinct
    ("a b c a b c", {}, -0.25),
    # the same word 12 times: 10 trigrams, 1 distinct, scaled by max_penalty -0.5
    ("so " * 12, {"max_penalty": -0.5}, -0.45),
    # case-insensitive: "Wait wait wait" repeats
    ("Wait wait WAIT wait", {"ngram_size": 2}, pytest.approx(-2 / 3)),
    # shorter than n: no penalty
    ("ok", {}, 0.0),
]


@pytest.mark.parametrize("completion,params,expected", REPETITION_CASES)
def test_repetition_penalty(completion, params, expected):
    assert score("repetition_penalty", [completion], params) == [expected]


def test_repetition_penalty_must_be_a_penalty():
    with pytest.raises(ValueError, match="max_penalty: must be <= 0"):
        REWARDS["repetition_penalty"](max_penalty=0.5)


@pytest.mark.parametrize("length,expected", [
    (0, 0.0),  # empty completion: no punishment
    (80, 0.0),  # at the start of the buffer (L_max - L_cache)
    (90, -0.5),  # halfway through the buffer
    (100, -1.0),  # exactly L_max
    (130, -1.0),  # beyond L_max (untruncated generations)
])
def test_overlong(length, expected):
    assert score("overlong", ["x"], {"max_completion_length": 100, "buffer_length": 20},
                 completion_ids=[[7] * length]) == [expected]


def test_overlong_without_token_ids_skips():
    assert score("overlong", ["x", "y"]) == [None, None]


# ------------------------------------------------------------------------------------------------ task verifiers

COUNTDOWN_CASES = [
    # (completion, expected) for nums [3, 5, 2], target 16
    # correct
    (" 3+5=8, 8*2=16</think><answer>(3 + 5) * 2</answer>", 1.0),
    # correct with a trailing "= 16"
    ("</think><answer>(5 + 3) * 2 = 16</answer>", 1.0),
    # wrong value
    ("</think><answer>3 * 5 + 2</answer>", 0.0),
    # hacked: right value, but a number used twice / one missing
    ("</think><answer>8 * 2</answer>", 0.0),
    # hacked: code instead of arithmetic
    ("</think><answer>__import__('os').system('ls')</answer>", 0.0),
    # hacked: power tower (** is not allowed)
    ("</think><answer>3 ** 5 ** 2</answer>", 0.0),
    # division by zero
    ("</think><answer>3 * 5 / (2 - 2)</answer>", 0.0),
    # too long: 5,000 digits (int() itself would refuse it)
    ("</think><answer>" + "9" * 5000 + "</answer>", 0.0),
    # 90 nested parentheses: they add no syntax-tree nodes, stay within the length bound, and still evaluate
    ("</think><answer>" + "(" * 90 + "3 + 5" + ")" * 90 + " * 2</answer>", 1.0),
    # too many nodes: unary minus 100 times
    ("</think><answer>" + "-" * 100 + "16 + 3 + 5 + 2</answer>", 0.0),
    # no answer block
    (" (3 + 5) * 2", 0.0),
]


@pytest.mark.parametrize("completion,expected", COUNTDOWN_CASES)
def test_countdown(completion, expected):
    assert score("countdown", [completion], nums=[[3, 5, 2]], target=[16]) == [expected]


def _gym_rows(task: str, n: int, **params):
    import reasoning_gym

    data = reasoning_gym.create_dataset(task, size=n, seed=1, **params)
    return [{"question": e["question"], "answer": str(e["answer"]), "task": task,
             "metadata": json.dumps(e["metadata"], default=str)} for e in data]


def test_reasoning_gym_uses_the_tasks_own_verifier():
    row = _gym_rows("basic_arithmetic", 1)[0]
    cols = {k: [row[k]] * 4 for k in ("task", "answer", "metadata", "question")}
    completions = [f"</think><answer>{row['answer']}</answer>",  # correct
                   "</think><answer>123456789</answer>",  # wrong
                   f" the answer is {row['answer']}</think>",  # no answer block
                   "</think><answer></answer>"]  # empty answer
    assert score("reasoning_gym", completions, **cols) == [1.0, 0.0, 0.0, 0.0]


def test_reasoning_gym_countdown_partial_credit():
    # Countdown's verifier gives 0.05 for a well-formed wrong equation, 0.01 for garbage, 1.0 when right
    row = {"task": "countdown", "answer": "3 * 5 + 1", "question": "",
           "metadata": json.dumps({"numbers": [3, 5, 1], "target": 16})}
    cols = {k: [v] * 3 for k, v in row.items()}
    got = score("reasoning_gym", ["</think><answer>3 * 5 + 1</answer>", "</think><answer>3 + 5 + 1</answer>",
                                  "</think><answer>sixteen</answer>"], **cols)
    assert got == [1.0, 0.05, 0.01]


def test_reasoning_gym_reads_the_answer_where_answer_from_says():
    row = _gym_rows("basic_arithmetic", 1)[0]
    cols = {k: [row[k]] * 3 for k in ("task", "answer", "metadata", "question")}
    completions = [f" work</think> so it is {row['answer']}",  # right number, outside the tags
                   f"</think><answer>{row['answer']}</answer>",  # right answer after an empty think block
                   f" work</think><answer>{row['answer']}</answer>"]  # R1 format
    assert score("reasoning_gym", completions, {"answer_from": "tags"}, **cols) == [0.0, 1.0, 1.0]
    assert score("reasoning_gym", completions, {"answer_from": "strict"}, **cols) == [0.0, 0.0, 1.0]
    assert score("reasoning_gym", completions, {"answer_from": "anywhere"}, **cols) == [1.0, 1.0, 1.0]


COUNTDOWN_ANSWER_FROM_CASES = [
    # (completion, tags, strict, anywhere) for nums [3, 5, 2], target 16
    # R1 format, right: paid everywhere
    (" 3+5=8</think><answer>(3 + 5) * 2</answer>", 1.0, 1.0, 1.0),
    # right expression after an empty think block: not R1 format
    ("</think><answer>(3 + 5) * 2</answer>", 1.0, 0.0, 1.0),
    # right expression in prose, no tags: only format-free finds it (the last arithmetic run, "= 16" dropped)
    (" I get (3 + 5) * 2 = 16.</think>", 0.0, 0.0, 1.0),
    # a second answer block hedges: tags reads the last one, strict refuses the shape
    (" x</think><answer>3 * 5 + 2</answer><answer>(3 + 5) * 2</answer>", 1.0, 0.0, 1.0),
    # the target alone, anywhere: not an expression of the numbers
    (" so 16</think>", 0.0, 0.0, 0.0),
]


@pytest.mark.parametrize("completion,tags,strict,anywhere", COUNTDOWN_ANSWER_FROM_CASES)
def test_countdown_answer_from(completion, tags, strict, anywhere):
    got = [score("countdown", [completion], {"answer_from": a}, nums=[[3, 5, 2]], target=[16])[0]
           for a in ("tags", "strict", "anywhere")]
    assert got == [tags, strict, anywhere]


def test_answer_from_must_be_known():
    with pytest.raises(ValueError, match=r"countdown\.answer_from: 'everywhere' is not one of tags, strict, anywhere"):
        REWARDS["countdown"](answer_from="everywhere")


# ------------------------------------------------------------------------------------------------ answer extraction

ANSWER_CASES = [
    # (response from the prefill's <think> on, kind, tags, strict, anywhere)
    # R1 format: the block, whatever the mode
    ("<think> 2+2 </think> <answer> 4 </answer>", "number", "4", "4", "4"),
    # empty think block: a block, but not R1 format
    ("<think></think><answer>4</answer>", "number", "4", None, "4"),
    # text after the answer block breaks R1 format
    ("<think>a</think><answer>4</answer> done", "number", "4", None, "4"),
    # two answer blocks: the last one; not R1 format
    ("<think>a</think><answer>3</answer><answer>4</answer>", "number", "4", None, "4"),
    # empty answer block
    ("<think>a</think><answer> </answer>", "number", "", None, ""),
    # no block: \boxed{} first, balanced braces kept
    ("<think>so \\boxed{\\frac{1}{2}} and 7</think>", "number", None, None, "\\frac{1}{2}"),
    # no block, no box: the last number; thousands separators dropped
    ("<think>it costs 1,234 dollars</think>", "number", None, None, "1234"),
    # a negative final number, after an "=" with a space
    ("<think>5 - 3 - 6 = -4</think>", "number", None, None, "-4"),
    # a binary minus is not a sign: "10-4" ends in 4
    ("<think>10-4</think>", "number", None, None, "4"),
    # decimals and fractions are one number; a full stop is not a decimal point
    ("<think>half is 1/2. Or 0.5.</think>", "number", None, None, "0.5"),
    # expression kind: the last arithmetic run, without a trailing "=" or full stop
    ("<think>try 3 * 5 = 15, no. So (3 + 5) * 2 = 16.</think>", "expression", None, None, "(3 + 5) * 2 = 16"),
    # expression kind without any digit
    ("<think>no idea</think>", "expression", None, None, None),
    # number kind without any number
    ("<think>no idea</think>", "number", None, None, None),
]


@pytest.mark.parametrize("response,kind,tags,strict,anywhere", ANSWER_CASES)
def test_final_answers(response, kind, tags, strict, anywhere):
    from r1pipeline.rewards.text import final_answers

    prompt = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "Let me think.\n<think>"}]
    completion = [conv(response[len("<think>"):])]  # the prefill holds the <think>, as in training
    got = [final_answers(completion, [prompt], a, kind)[0] for a in ("tags", "strict", "anywhere")]
    assert got == [tags, strict, anywhere]


def test_free_answer_is_linear_on_a_long_run_without_digits():
    import time

    from r1pipeline.rewards.text import free_answer

    t0 = time.monotonic()
    assert free_answer("(" * 200_000, "expression") is None and free_answer(" " * 200_000, "number") is None
    assert time.monotonic() - t0 < 1.0


# ------------------------------------------------------------------------------------------------ correct

CORRECT_CASES = [
    # (completion, params, expected) with checks [countdown] on nums [3, 5, 2], target 16
    # R1 format and a right expression
    (" 3+5=8, 8*2=16</think><answer>(3 + 5) * 2</answer>", {}, 1.0),
    # the target restated (the prompt gives it away)
    (" easy</think><answer>16</answer>", {}, 0.0),
    # right expression after an empty think block: strict by default
    ("</think><answer>(3 + 5) * 2</answer>", {}, 0.0),
    # ... paid when the mix asks for the last answer block only
    ("</think><answer>(3 + 5) * 2</answer>", {"answer_from": "tags"}, 1.0),
    # right expression outside the tags, format-free
    (" so (3 + 5) * 2 works</think>", {"answer_from": "anywhere"}, 1.0),
    # two checks, one satisfied: not fully correct ...
    (" x</think><answer>(3 + 5) * 2</answer>", {"checks": ["countdown", "test_never"]}, 0.0),
    # ... the mean with partial credit
    (" x</think><answer>(3 + 5) * 2</answer>", {"checks": ["countdown", "test_never"], "partial_credit": True}, 0.5),
    # reasoning-gym's Countdown gives 0.05 to a well-formed wrong equation: no partial credit by default
    (" x</think><answer>3 * 5 + 2</answer>", {"checks": ["reasoning_gym"]}, 0.0),
    # ... passed through with partial_credit
    (" x</think><answer>3 * 5 + 2</answer>", {"checks": ["reasoning_gym"], "partial_credit": True}, 0.05),
]


@register("test_never")
class NeverCorrect:
    """Test-only check: nothing is correct."""

    def __call__(self, completions, **kwargs):
        return [0.0] * len(completions)


@pytest.mark.parametrize("completion,params,expected", CORRECT_CASES)
def test_correct(completion, params, expected):
    row = {"nums": [[3, 5, 2]], "target": [16], "task": ["countdown"], "answer": ["(3 + 5) * 2"], "question": [""],
           "metadata": [json.dumps({"numbers": [3, 5, 2], "target": 16})]}
    assert score("correct", [completion], {"checks": ["countdown"], **params}, **row) == [expected]


def test_correct_is_none_when_no_check_can_verify():
    # GSM8K-style check on a row whose reference has no math: skipped, as accuracy itself is
    assert score("correct", [" x</think><answer>4</answer>"], {"checks": ["accuracy"]}, answer=["n/a"]) == [None]


@pytest.mark.parametrize("params,message", [
    # no checks at all
    ({"checks": []}, r"correct\.checks: empty; name the dataset's check, e.g\. checks: \$\{dataset\.verify\}"),
    # a check the registry does not know
    ({"checks": ["countdwn"]}, r"correct\.checks\.countdwn: unknown reward \(did you mean 'countdown'\?\)"),
    # two places saying where the answer is read
    ({"checks": [{"countdown": {"answer_from": "tags"}}]},
     r"correct\.checks\.countdown\.answer_from: 'tags' conflicts with correct\.answer_from='strict'; set it once"),
])
def test_correct_rejects_bad_checks(params, message):
    with pytest.raises(ValueError, match=message):
        REWARDS["correct"](**params)
