"""`accuracy`: correctness against a reference with math-verify."""
from __future__ import annotations

import logging

from r1pipeline.rewards import mathcheck
from r1pipeline.rewards.registry import register
from r1pipeline.rewards.text import check_answer_from, final_answers

log = logging.getLogger(__name__)

MAX_ANSWER_CHARS = 2_000  # a real final answer is short; longer answers are cut, not parsed whole


def accuracy_score(answer: str | None, reference, timeout_s: float) -> float | None:
    """1.0 / 0.0 for an extracted answer (None = the response gave none) against a reference; None when the
    reference has no parsable math. A check that runs past `timeout_s` scores 0.0: an answer too pathological to
    verify in time earns nothing.
    """
    if reference is None or not str(reference).strip():
        return None
    answer = (answer or "")[:MAX_ANSWER_CHARS]  # no answer: still asked, so an unparsable reference gives None
    try:
        ok = mathcheck.check(str(reference), answer, timeout_s=timeout_s)
    except mathcheck.MathTimeout:
        log.warning("math-verify timed out after %.1f s on answer %r; scored 0.0", timeout_s, answer[:200])
        return 0.0
    except (RuntimeError, OSError) as exc:
        log.warning("math-verify failed (%s) on reference %r, answer %r; scored 0.0", exc, reference, answer[:200])
        return 0.0
    return None if ok is None else float(ok)


@register("accuracy")
class AccuracyReward:
    """1.0 if the answer is mathematically equivalent to the reference (math-verify: LaTeX or plain, `\\boxed{}`,
    fractions vs decimals, sets, intervals), else 0.0. The answer is read as `answer_from` says
    (`text.final_answers`): `tags` (default) the last `<answer>` block, `strict` only from a response in R1 format,
    `anywhere` format-free (else the last `\\boxed{}` or number of the response). An answer that holds several
    numbers of which math-verify would pick one ("7919, 16") is a list of guesses and scores 0.0 (`mathcheck`).
    The reference column is `reference_column` (`answer`; math datasets such as MATH use `solution`, whose boxed
    value is taken).

    When the reference itself has no parsable math the sample scores None (TRL then skips it for this reward)
    rather than a made-up 0 or 1: a 0 would punish a correct model for a bad dataset row, a 1 would reward anything.
    Each check is bounded by `timeout_s` seconds of wall clock (see `mathcheck`); a timeout scores 0.0.
    Range {0, 1} or None. Example (reference "\\frac{1}{2}"): "<answer>0.5</answer>" -> 1.0;
    "<answer>2</answer>" -> 0.0; "\\boxed{0.5}" outside the tags -> 0.0 (`anywhere`: 1.0);
    reference "see the figure" -> None.
    """

    required_columns = ("reference_column",)  # a parameter name: the column it names is read

    def __init__(self, reference_column: str = "answer", timeout_s: float = 5.0, answer_from: str = "tags"):
        self.reference_column = reference_column
        self.timeout_s = float(timeout_s)
        self.answer_from = check_answer_from(answer_from, "accuracy")

    def __call__(self, completions, prompts=None, **kwargs) -> list[float | None]:
        references = kwargs.get(self.reference_column)
        if references is None:
            raise KeyError(f"accuracy: no dataset column {self.reference_column!r} (set reference_column)")
        return [accuracy_score(a, ref, self.timeout_s) for a, ref in zip(self.answers(completions, prompts), references)]

    def answers(self, completions, prompts=None) -> list[str | None]:
        """The answer this reward reads from each response (what it scores)."""
        return final_answers(completions, prompts, self.answer_from)
