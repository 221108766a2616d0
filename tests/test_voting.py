"""maj@k votes by verified equivalence: answers that the task's check counts as the same are one vote."""
from __future__ import annotations

import pytest

from r1pipeline.voting import CountdownVoter, MathVoter, NumberVoter, majority_correct, voter_for, votes

@pytest.mark.parametrize("voter,answers,expected", [
    # numbers: one vote per value, whatever the spelling; no answer, no vote
    (NumberVoter(), ["9", "9.0", " 9 ", "10", None, "18/2", "-9"], [[0, 1, 2, 5], [3], [6]]),
    (NumberVoter(), ["1,234", "1234", "1234.5"], [[0, 1], [2]]),  # thousands separators
    # not numbers: case and whitespace folded, nothing more
    (NumberVoter(), ["Yes", "yes ", "YES  please", "no"], [[0, 1], [2], [3]]),
    # Countdown (nums 3 5 2, target 16): same value and same numbers is one vote; the target restated is another
    (CountdownVoter(), ["(3 + 5) * 2", "2*(5+3)", "(3+5)*2 = 16", "16", "3 * 5 + 2 - 1", "8 * 2"],
     [[0, 1, 2], [3], [4], [5]]),
    # an expression that does not evaluate votes by its text without spaces
    (CountdownVoter(), ["3 ** 2", "3**2", "3 / 0"], [[0, 1], [2]]),
])
def test_votes_group_answers_that_the_check_counts_as_the_same(voter, answers, expected):
    assert votes(answers, voter) == expected


def test_math_answers_vote_by_math_verify_equivalence():
    # "\frac{1}{2}", "0.5" and "1/2" are one answer to math-verify; "2" is another; free text votes by its text
    assert votes(["\\frac{1}{2}", "0.5", "2", "1/2", "\\boxed{2}", "see above", "See  above"], MathVoter()) == [
        [0, 1, 3], [2, 4], [5, 6]]


@pytest.mark.parametrize("answers,correct,expected", [
    (["8", "8.0", "9"], [True, True, False], True),     # 8 and 8.0 are one vote of two: right
    (["9", "8", "8.0"], [False, True, True], True),     # the same, the wrong answer first
    (["9", "9.0", "8"], [False, False, True], False),   # the majority is wrong though one sample is right
    (["8", "9"], [True, False], True),                  # a tie goes to the vote seen first
    ([None, None, "9"], [False, False, False], False),  # only answers vote
    ([None, None], [False, False], False),              # no answer at all: no majority
])
def test_majority_is_the_largest_vote_by_equivalence(answers, correct, expected):
    assert majority_correct(answers, correct, NumberVoter()) is expected


@pytest.mark.parametrize("verify,voter", [
    (["countdown"], CountdownVoter),
    (["reasoning_gym"], NumberVoter),
    ([{"accuracy": {"reference_column": "answer"}}], MathVoter),
    (["tag_count"], NumberVoter),  # a check that is not about a value: numbers or folded text
])
def test_each_check_votes_its_own_way(verify, voter):
    assert type(voter_for(verify)) is voter
