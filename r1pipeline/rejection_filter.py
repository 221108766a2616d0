"""The rejection-sampling filter (R1 section 2.3.3): keep only correct samples whose reasoning is in one language,
has no code blocks and no overlong paragraphs, once per prompt; count why the others were dropped.

Pure functions on text, so they can be tested on crafted samples. The stage is r1pipeline/stages/rejection_sampling.py.
"""
from __future__ import annotations

import re
from collections import Counter

from r1pipeline.rewards.language import DEFAULT_LANGUAGES, chain_of_thought, prompt_languages, target_share

# The order in which drop reasons are checked; a sample is counted under the first one it fails.
DROP_REASONS = ("wrong", "mixed_language", "code_block", "long_paragraph", "duplicate")


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
    """Decides keep/drop for each sample and counts why; `filters` is the stage's `filters:` block. A sample's
    `prompt_key` is its prompt's last user turn: the dedupe key, and the text whose language is the target."""

    def __init__(self, filters):
        self.cfg = filters
        self.dedupe = Dedupe()
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
