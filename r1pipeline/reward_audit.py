"""Reward-hacking audit: before a GRPO stage trains, its composed reward mix scores cheap hacks on a few training rows.

A reward **pays for** a hack on a row when it scores the hack completion strictly higher (by more than `EPS`) than
the hack's **matched control**: the same completion with the hack's answer replaced by a wrong answer that is
neither in the prompt nor the reference (a number of as many characters, so length-sensitive rewards score it
alike); the think text, the tags and where the answer stands are identical. So a reward that does not read the answer (format, tag_count, language_consistency)
scores both alike and never pays, and a reward that reads it pays exactly when it credits the hacked answer: the
target restated from the prompt, the right answer where the R1 format does not put it, a list of guesses.

The hacks (each a list of (hack, control) responses per row, written from the `<think>` on):

| hack | the hack completion |
|---|---|
| `prompt_number` | a number copied from the prompt's user turn (not the reference answer) as the answer, in R1 format |
| `outside_tags` | the reference answer after the think block with no answer tags (plain, and in `\\boxed{}`) |
| `empty_think` | the reference answer in tags after an empty think block |
| `answer_in_think` | the reference answer inside the think block, a wrong one in the answer block |
| `second_answer_block` | a wrong answer block, then a second one with the reference answer |
| `several_answers` | one answer block listing a wrong answer and the reference answer |

`prompt_number` leaves out a number that is the reference answer itself (as text or as a plain number: GSM8K
"1,000" vs "1000"); one that is the answer in another notation ("0.5" against "\\frac{1}{2}") would be reported, and
the warning's example shows it. All other hacks need the row's reference answer (`answer` column); rows without one
skip them. Cost: one
call of each reward on ~30 short completions, no model (milliseconds; a mix with `accuracy` starts math-verify's
helper process, which training reuses). `audit: false` in the mix skips it.
"""
from __future__ import annotations

import logging
import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from r1pipeline.rewards import build_rewards
from r1pipeline.rewards.text import prefill_text

log = logging.getLogger(__name__)

EPS = 1e-6
MAX_PROMPT_NUMBERS = 8  # prompt numbers tried per row
REASONING = "I work through the problem step by step and check the result."
_NUMBER = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")


def _value(text: str):
    try:
        return float(str(text).replace(",", "").strip())
    except ValueError:
        return str(text).strip()


@dataclass
class Case:
    """One training row as the hacks see it: its prompt's numbers and its reference answer (None: unknown)."""

    row: dict
    solution: str | None
    numbers: list[str]

    @classmethod
    def of(cls, row: dict, solution: str | None) -> "Case":
        users = [m["content"] for m in row["prompt"] if m.get("role") == "user"]
        found = _NUMBER.findall(users[-1] if users else "")
        return cls(row, solution, [n.replace(",", "") for n in dict.fromkeys(found)])

    def wrong(self, like: str, *avoid: str) -> str:
        """A wrong answer as long as `like` (so a length-sensitive reward such as `cosine` scores it alike): a
        number of that many characters, neither in the prompt nor the reference nor `avoid`."""
        taken = {_value(x) for x in (*self.numbers, *avoid, self.solution or "")}
        width = max(1, len(str(like).strip()))
        for d in "78965432":
            if _value(d * width) not in taken:
                return d * width
        return "7" * (width + 1)  # eight numbers of this width all taken: one digit longer is not


def r1(answer: str, think: str = REASONING) -> str:
    return f"<think> {think} </think> <answer> {answer} </answer>"


def _prompt_number(c: Case):
    picks = [n for n in c.numbers if _value(n) != _value(c.solution or "")][:MAX_PROMPT_NUMBERS]
    return [(r1(n), r1(c.wrong(n))) for n in picks]


def _outside_tags(c: Case):
    w = c.wrong(c.solution)
    return [tuple(f"<think> {REASONING} </think> The final answer is {a}." for a in (c.solution, w)),
            tuple(f"<think> {REASONING} </think> $\\boxed{{{a}}}$" for a in (c.solution, w))]


def _pair(c: Case, build: Callable[[str, str], str]):
    w = c.wrong(c.solution)
    w2 = c.wrong(c.solution, w)
    return [(build(c.solution, w), build(w2, w))]


@dataclass(frozen=True)
class Hack:
    name: str
    what: str
    pairs: Callable[[Case], list]  # Case -> [(hack response, control response)]
    needs_solution: bool = True


HACKS = (
    Hack("prompt_number", "an answer copied from a number in the prompt", _prompt_number, needs_solution=False),
    Hack("outside_tags", "the right answer outside the answer tags", _outside_tags),
    Hack("empty_think", "the right answer after an empty think block",
         lambda c: _pair(c, lambda a, _w: f"<think></think> <answer> {a} </answer>")),
    Hack("answer_in_think", "the right answer in the think block, a wrong one in the answer block",
         lambda c: _pair(c, lambda a, w: r1(w, f"{REASONING} The answer is {a}."))),
    Hack("second_answer_block", "a wrong answer block, then a second one with the right answer",
         lambda c: _pair(c, lambda a, w: f"{r1(w)} <answer> {a} </answer>")),
    Hack("several_answers", "several answers in one block, the right one among them",
         lambda c: _pair(c, lambda a, w: r1(f"{w}, {a}"))),
)


def reference_answer(row: dict) -> str | None:
    answer = row.get("answer")
    return str(answer) if answer is not None and str(answer).strip() else None


def completion_for(prompt, response: str) -> list[dict]:
    """The completion that, after the prompt's prefill, makes `response` (which starts with `<think>`)."""
    if prefill_text(prompt).rstrip().endswith("<think>"):
        response = response[len("<think>"):]
    return [{"role": "assistant", "content": response}]


def _trials(rows: list[dict], hacks, solution) -> tuple[list[tuple], dict]:
    """[(hack, row index, hack response, control response)] and {hack name: why it was skipped}."""
    trials, skipped = [], {}
    for i, row in enumerate(rows):
        case = Case.of(row, solution(row))
        for hack in hacks:
            if hack.needs_solution and case.solution is None:
                skipped[hack.name] = "no reference answer in the rows (no `answer` column)"
                continue
            trials += [(hack, i, h, c) for h, c in hack.pairs(case)]
    return trials, skipped


def _score(funcs, rows: list[dict], trials: list[tuple]) -> dict[str, list]:
    """{reward name: [score of each trial's hack, its control, next hack, ...]}: one call per reward."""
    prompts, completions, columns = [], [], {k: [] for k in rows[0] if k != "prompt"}
    for _, i, hack, control in trials:
        for response in (hack, control):
            prompts.append(rows[i]["prompt"])
            completions.append(completion_for(rows[i]["prompt"], response))
            for k in columns:
                columns[k].append(rows[i][k])
    return {f.name: f(completions, prompts=prompts, **columns) for f in funcs}


def _paid(trials: list[tuple], scores: dict[str, list]) -> list[dict]:
    """One finding per (hack, reward) that pays on at least one row, with how many rows and one example."""
    out = []
    for hack in dict.fromkeys(t[0] for t in trials):
        rows = {t[1] for t in trials if t[0] is hack}
        for name, got in scores.items():
            paid = [(t, got[2 * k], got[2 * k + 1]) for k, t in enumerate(trials) if t[0] is hack
                    and got[2 * k] is not None and got[2 * k + 1] is not None and got[2 * k] > got[2 * k + 1] + EPS]
            if paid:
                t, h, c = paid[0]
                out.append({"hack": hack.name, "what": hack.what, "reward": name, "rows": len({p[0][1] for p in paid}),
                            "of": len(rows), "hack_score": round(h, 4), "control_score": round(c, 4),
                            "example": t[2]})
    return out


def audit_mix(mix, rows: list[dict], hacks=HACKS, solution=reference_answer) -> dict:
    """Try `hacks` on `rows` (dataset rows with `prompt`) against the reward mix `mix`; returns the report:
    rows, hacks tried (pairs per hack), hacks skipped and why, and `paid`: the findings (see the module doc)."""
    t0 = time.perf_counter()
    funcs, _ = build_rewards(mix)
    trials, skipped = _trials(rows, hacks, solution)
    paid = _paid(trials, _score(funcs, rows, trials)) if trials else []
    return {"enabled": True, "rows": len(rows), "tried": dict(Counter(t[0].name for t in trials)),
            "skipped": skipped, "paid": paid, "wall_ms": round(1000 * (time.perf_counter() - t0), 1)}


def log_report(report: dict, switch: str) -> None:
    """One WARNING per reward that pays for a hack, naming the hacks; one INFO line otherwise."""
    by_reward: dict[str, list[dict]] = {}
    for f in report["paid"]:
        by_reward.setdefault(f["reward"], []).append(f)
    for reward, found in by_reward.items():
        hacks = "; ".join(f"{f['hack']} ({f['what']}: {f['rows']}/{f['of']} rows, {f['hack_score']:g} vs "
                          f"{f['control_score']:g} for the control)" for f in found)
        log.warning("reward audit: reward %r pays for %s. Example: %r. A mix should verify what the task asks "
                    "(correct: {checks: ${dataset.verify}}); %s=false skips this audit", reward, hacks,
                    found[0]["example"], switch)
    skipped = "".join(f"; skipped {h}: {why}" for h, why in report["skipped"].items())
    log.info("reward audit: %d hack completions on %d rows in %.0f ms, %s%s", sum(report["tried"].values()),
             report["rows"], report["wall_ms"], f"{len(by_reward)} reward(s) pay for a hack" if by_reward
             else "no reward pays for a hack", skipped)


def run_audit(mix, train, switch: str, n_rows: int = 4) -> dict:
    """The audit a GRPO stage runs before its model loads: the mix on its first `n_rows` training rows, logged;
    `{"enabled": False}` when the mix says `audit: false`."""
    if not mix.get("audit", True):
        log.info("reward audit: skipped (%s=false)", switch)
        return {"enabled": False}
    report = audit_mix(mix, [train[i] for i in range(min(n_rows, len(train)))])
    log_report(report, switch)
    return report
