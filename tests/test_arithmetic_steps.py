"""`arithmetic_steps`: the share of a think block's equations that are right and grounded in the question, table by
table (each case says what it shows)."""
from __future__ import annotations

import pytest

from r1pipeline.rewards.arithmetic_steps import ArithmeticStepsReward

PROMPT = [{"role": "system", "content": "Think, then answer."}, {"role": "user", "content": "Calculate 4 + 9 + 3."},
          {"role": "assistant", "content": "<think>"}]


@pytest.mark.parametrize("completion,score", [
    ("4 + 9 = 13, 13 + 3 = 16 </think> <answer> 16 </answer>", 1.0),   # the chain, every step right
    ("4+9=13. 13+3=16.</think><answer>16</answer>", 1.0),                 # spacing does not matter
    ("4 + 9 + 3 = 16 </think> <answer> 16 </answer>", 1.0),               # one right equation over the question
    ("4 + 9 = 12, 12 + 3 = 15 </think> <answer> 15 </answer>", 0.0),     # a wrong step poisons what builds on it
    ("4 + 9 = 13, 13 + 3 = 17 </think> <answer> 17 </answer>", 0.5),     # the first step right, the second wrong
    ("1 + 1 = 2, 2 + 2 = 4 </think> <answer> 16 </answer>", 0.0),        # true, but about nothing in the question
    ("4 + 9 + 3 </think> <answer> 16 </answer>", 0.0),                    # the question restated: no equation
    ("4 + 9 = 13, 13 + 3 = 16", 0.0),                                      # no closed think block
    ("9 x 4 = 36 </think> <answer> 36 </answer>", 1.0),                   # x as times
    ("4 / 0 = 0 </think> <answer> 0 </answer>", 0.0),                     # division by zero is no value
])
def test_arithmetic_steps(completion, score):
    assert ArithmeticStepsReward()([completion], prompts=[PROMPT]) == [score]


def test_is_a_registered_reward_with_no_columns_and_never_reads_the_answer():
    from r1pipeline.rewards import build_rewards
    from omegaconf import OmegaConf

    funcs, weights = build_rewards(OmegaConf.create({"arithmetic_steps": {"weight": 0.5}}))
    good = "4 + 9 = 13, 13 + 3 = 16 </think> <answer> {} </answer>"
    assert weights == [0.5]
    assert funcs[0]([good.format(16), good.format(99)], prompts=[PROMPT, PROMPT]) == [1.0, 1.0]
