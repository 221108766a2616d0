"""Chains of thought as SFT data: the readable R1 template, and the rejection-sampling filters.

R1 rewrites verified R1-Zero outputs into a readable format (reasoning, then a summary) and, for SFT2, keeps only
correct samples whose reasoning is in one language, has no code blocks and no overlong paragraphs. These are pure
functions on text so they can be tested on crafted samples.
"""
from __future__ import annotations

import re
from collections import Counter

from r1pipeline.rewards.language import DEFAULT_LANGUAGES, chain_of_thought, prompt_languages, target_share
from r1pipeline.rewards.text import extract_answer

TAGS = re.compile(r"</?(think|answer)>")
ANSWER_LEAD = re.compile(r"^(so,?\s+)?(the\s+)?(final\s+)?answer\s+is\s*:?\s*", re.I)
# The order in which drop reasons are checked; a sample is counted under the first one it fails.
DROP_REASONS = ("wrong", "mixed_language", "code_block", "long_paragraph", "duplicate")


def split_response(response: str) -> tuple[str, str | None]:
    """(reasoning, answer) of a response; reasoning is the think block, or what follows an unclosed `<think>`."""
    answer = extract_answer(response)
    head = response.split("<answer>", 1)[0]
    if "<think>" in head:
        head = head.rsplit("<think>", 1)[1]
    reasoning = head.split("</think>", 1)[0]
    return reasoning, answer


def clean_reasoning(text: str) -> str:
    """Strip tags and trailing spaces, collapse blank-line runs and drop a line repeated right after itself."""
    lines, prev = [], None
    for line in TAGS.sub("", text).splitlines():
        line = line.rstrip()
        if line and line.strip() == prev:
            continue
        lines.append(line)
        prev = line.strip() or prev
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def refine(response: str, template: str, answer: str | None = None) -> str | None:
    """Rewrite a raw response into the readable template (`{reasoning}`, `{answer}`); None if it has no reasoning.

    `answer` is the answer verification read (cold start passes it, so a format-free check's answer is the one
    stated); else the response's answer block. Without either, the last line of the reasoning is the answer (where
    R1-Zero style outputs state it). A last line that only states the answer ("The final answer is 6.") leaves the
    reasoning unless it was the only one, since the template states the answer itself.
    """
    reasoning, block = split_response(response)
    reasoning = clean_reasoning(reasoning)
    if not reasoning:
        return None
    answer = answer if answer is not None else block
    if answer is not None and len(reasoning.splitlines()) > 1:
        *rest, last = reasoning.splitlines()
        if ANSWER_LEAD.match(last.strip().lower().replace("therefore, ", "")):
            reasoning = "\n".join(rest).strip()
    if answer is None:
        *rest, last = reasoning.splitlines()
        answer = ANSWER_LEAD.sub("", last.strip()).rstrip(" .!")
        reasoning = "\n".join(rest).strip() or reasoning
    return template.format(reasoning=reasoning, answer=answer.strip()) if answer.strip() else None


def is_mixed_language(response: str, prompt: str, min_share: float = 0.95,
                      languages: tuple[str, ...] = DEFAULT_LANGUAGES) -> bool:
    """True when under `min_share` of the chain of thought's words are in the language of `prompt` (its last user
    turn): the `language_consistency` reward's score below `min_share`, by the same identifier, words and candidate
    `languages` (r1pipeline/rewards/language.py). When the prompt's language cannot be read (no words), the chain of
    thought's own main language is the reference: mixed = no language holds `min_share` of its words. A response
    without a chain of thought, or one of only math, is not mixed."""
    cot = chain_of_thought(response)
    targets = prompt_languages(prompt, languages) or prompt_languages(cot, languages)
    share = target_share(cot, targets, languages) if targets else None
    return share is not None and share < min_share


def has_code_block(text: str) -> bool:
    return "```" in text


def longest_paragraph(text: str) -> int:
    """Characters in the longest paragraph (paragraphs are separated by blank lines)."""
    return max((len(p.strip()) for p in re.split(r"\n\s*\n", text)), default=0)


def normalized(text: str) -> str:
    return " ".join(text.lower().split())


class RejectionFilter:
    """Decides keep/drop for each sample and counts why; `filters` is the stage's `filters:` block. A sample's
    `prompt_key` is its prompt's last user turn: the dedupe key, and the text whose language is the target."""

    def __init__(self, filters):
        self.cfg = filters
        self.seen: set[tuple[str, str]] = set()
        self.dropped: Counter = Counter({r: 0 for r in DROP_REASONS})
        self.kept = 0

    def reason(self, prompt_key: str, response: str, score: float) -> str | None:
        c = self.cfg
        if score < c.min_score:
            return "wrong"
        if c.mixed_language and is_mixed_language(response, prompt_key, c.min_language_share):
            return "mixed_language"
        if c.code_blocks and has_code_block(response):
            return "code_block"
        if c.max_paragraph_chars and longest_paragraph(response) > c.max_paragraph_chars:
            return "long_paragraph"
        key = (prompt_key, normalized(response))
        if c.dedupe and key in self.seen:
            return "duplicate"
        self.seen.add(key)
        return None

    def __call__(self, prompt_key: str, response: str, score: float) -> bool:
        why = self.reason(prompt_key, response, score)
        if why is None:
            self.kept += 1
            return True
        self.dropped[why] += 1
        return False

    def stats(self) -> dict:
        total = self.kept + sum(self.dropped.values())
        return {"samples": total, "kept": self.kept, "dropped": dict(self.dropped),
                "kept_share": round(self.kept / total, 4) if total else 0.0}
