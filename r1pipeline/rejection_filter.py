"""The rejection-sampling filter (R1 section 2.3.3): keep only correct samples whose reasoning is in one language,
has no code blocks and no overlong paragraphs, once per prompt; count why the others were dropped.

Pure functions on text, so they can be tested on crafted samples. The stage is r1pipeline/stages/rejection_sampling.py.
"""
from __future__ import annotations

import re
from collections import Counter


# Letter ranges of the scripts a chain of thought may drift between. Digits, punctuation and math symbols count
# for none, so "x = 3" is not evidence of any language.
SCRIPTS = {
    "latin": re.compile(r"[A-Za-z\u00C0-\u024F]"),
    "cjk": re.compile(r"[\u3040-\u30FF\u3400-\u4DBF\u4E00-\u9FFF\uAC00-\uD7AF]"),
    "cyrillic": re.compile(r"[\u0400-\u04FF]"),
    "arabic": re.compile(r"[\u0600-\u06FF]"),
    "hebrew": re.compile(r"[\u0590-\u05FF]"),
    "devanagari": re.compile(r"[\u0900-\u097F]"),
    "thai": re.compile(r"[\u0E00-\u0E7F]"),
}
# The order in which drop reasons are checked; a sample is counted under the first one it fails.
DROP_REASONS = ("wrong", "mixed_language", "code_block", "long_paragraph", "duplicate")


def script_shares(text: str) -> dict[str, float]:
    counts = {name: len(rx.findall(text)) for name, rx in SCRIPTS.items()}
    total = sum(counts.values())
    return {name: c / total for name, c in counts.items() if c} if total else {}


def is_mixed_language(text: str, min_share: float = 0.05) -> bool:
    """True when letters of two or more scripts each make up at least `min_share` of the text's letters."""
    return sum(share >= min_share for share in script_shares(text).values()) > 1


def has_code_block(text: str) -> bool:
    return "```" in text


def longest_paragraph(text: str) -> int:
    """Characters in the longest paragraph (paragraphs are separated by blank lines)."""
    return max((len(p.strip()) for p in re.split(r"\n\s*\n", text)), default=0)


def normalized(text: str) -> str:
    return " ".join(text.lower().split())


class Dedupe:
    """Each response once per prompt; case and whitespace do not make a new one (rejection sampling's filter and
    cold start's rewritten rows)."""

    def __init__(self):
        self.seen: set[tuple[str, str]] = set()

    def first(self, prompt_key: str, response: str) -> bool:
        """True the first time `response` comes for `prompt_key`, False for a repeat."""
        key = (prompt_key, normalized(response))
        new = key not in self.seen
        self.seen.add(key)
        return new


class RejectionFilter:
    """Decides keep/drop for each sample and counts why; `filters` is the stage's `filters:` block."""

    def __init__(self, filters):
        self.cfg = filters
        self.dedupe = Dedupe()
        self.dropped: Counter = Counter({r: 0 for r in DROP_REASONS})
        self.kept = 0

    def reason(self, prompt_key: str, response: str, score: float) -> str | None:
        c = self.cfg
        if score < c.min_score:
            return "wrong"
        if c.mixed_language and is_mixed_language(response, c.minor_script_share):
            return "mixed_language"
        if c.code_blocks and has_code_block(response):
            return "code_block"
        if c.max_paragraph_chars and longest_paragraph(response) > c.max_paragraph_chars:
            return "long_paragraph"
        if c.dedupe and not self.dedupe.first(prompt_key, response):
            return "duplicate"
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
