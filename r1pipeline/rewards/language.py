"""Language consistency of the chain of thought (DeepSeek-R1, section 2.3.3), by a language identifier.

R1's reward is the share of chain-of-thought words in the target language. Words and languages are decided here,
once, for the reward and for the rejection-sampling filter (`r1pipeline.rejection_filter.is_mixed_language`), so the two agree.

Words (what is counted): math (`$...$`, `\\(...\\)`, `\\[...\\]`, LaTeX commands), tags, digits, punctuation and
one-letter Latin tokens (variables such as x, n) are not words. A run of letters of one script is a word (Latin,
Cyrillic, Greek, Arabic, Hangul, Indic, ...). Scripts written without spaces count by length: a run of n Han,
Hiragana or Katakana characters is ceil(n / 2) words (Chinese and Japanese words are mostly one or two characters
long, so "我们计算" (we compute) is 2 words, not 4; a segmenter would be exact but needs a dictionary per language);
a run of Thai, Lao, Khmer or Myanmar characters is ceil(n / 4) words (their characters include vowel signs and tone
marks). A letter run of over 64 characters in a script written with spaces is no word (repetition, a hash).

Languages (which language each word is in), by lingua (`lingua-language-detector`: statistical n-gram models that
ship inside the wheel, no download, no network):
1. Consecutive words of one script form a run (Han and kana together: Japanese mixes them). A change of script is
   always a change of language, even for one word, so cross-script mixing (English <-> Chinese, Russian, ...) is
   counted word by word.
2. lingua's `detect_multiple_languages_of` splits each run into sections of one language among the candidate
   `languages`; a word takes its section's language. A script that no candidate writes is no candidate language.
3. Short or ambiguous text: the identifier is unreliable on a few words ("then" reads as German, "Let me compute" as
   French). A section given to another language than the target keeps that language only when lingua's confidence
   for it, measured on the section alone, exceeds its confidence for the target by at least `MIN_MARGIN` (0.25, on
   confidences that sum to 1 over the candidates); otherwise it counts as the target. So a stray word or a short
   ambiguous phrase is not penalised, while a sentence in another language is ("Das Ergebnis ist zwölf": German 0.99).
   Text in another script than the target's has target confidence 0 and always counts against it.

Target language: a configured ISO 639-1 code, or the language of the prompt's last user turn. A prompt is read by
script run as a whole (more evidence than a section): a run counts its words for lingua's best language on it and for
every candidate within MIN_MARGIN of that best, and the languages with the most words are the prompt's. A clear prompt
has one; a short one may have several ("Compute 2+2": German, English or Italian), and then the chain of thought may
be in any of them (the best-scoring counts). No words, or none in a candidate language: no target (None).
Candidates: fewer are faster and surer; the default is the languages reasoning data and drift mostly come in
(`DEFAULT_LANGUAGES`), and the target is always one. Known limits: a kanji-only section reads as Chinese; a language
outside the candidates reads as the closest candidate; where a section boundary falls is lingua's call (a word either
side of it may count for the neighbouring language).

Cost: the detector is built once per process, on first use, outside the reward's pickled state; its models load
lazily (the first batch takes ~1.9 s). Measured on this project's 2-core CPU with a training run and a test run beside
it (load average 3.6): 64 completions of 300 characters (a quarter each English, en+fr, en+zh, en+de) take ~160 ms
per batch (median of 20; 100 ms at best). All 75 languages as candidates: ~0.75 s; two: ~25 ms. Letter runs of over
64 characters are never words (lingua's time grows with the square of a word's length). Guarded by
`tests/test_language.py::test_a_grpo_batch_takes_well_under_a_second`.
"""
from __future__ import annotations

import functools
import math
from collections import Counter
from typing import NamedTuple

import regex

from r1pipeline.errors import ConfigError
from r1pipeline.rewards.registry import register
from r1pipeline.rewards.text import last_user_text, responses, think_block

# Characters per counted word in scripts written without spaces (see the module docstring).
CHARS_PER_WORD = {"Han": 2, "Hiragana": 2, "Katakana": 2, "Thai": 4, "Lao": 4, "Khmer": 4, "Myanmar": 4}
SPACED = ("Latin", "Cyrillic", "Greek", "Arabic", "Hebrew", "Hangul", "Devanagari", "Bengali", "Tamil", "Telugu",
          "Gujarati", "Gurmukhi", "Kannada", "Malayalam", "Armenian", "Georgian", "Ethiopic", "Sinhala", "Tibetan")
_WORD = regex.compile("|".join(
    [r"(?P<Katakana>[\p{Katakana}\u30FC]+)"]  # with the prolonged sound mark, which is no script's own
    + [rf"(?P<{s}>[\p{{{s}}}\p{{M}}]+)" for s in CHARS_PER_WORD if s != "Katakana"]
    + [rf"(?P<{s}>\p{{{s}}}[\p{{{s}}}\p{{M}}]*)" for s in SPACED]
    + [r"(?P<Other>\p{L})"]
))
# Math spans are bounded (1,000 characters) so that many unclosed `\(` cost linear, not quadratic, time.
_NOT_PROSE = regex.compile(r"\$\$.{0,1000}?\$\$|\$[^$\n]{0,1000}\$|\\\(.{0,1000}?\\\)|\\\[.{0,1000}?\\\]|\\[A-Za-z]+"
                           r"|</?[A-Za-z_]{1,20}>", regex.S)
# A letter run longer than this in a script written with spaces is no word (degenerate repetition, a hash); lingua's
# time grows with the square of a word's length (a 200,000-letter one: 30 s), so it never sees one.
MAX_WORD_CHARS = 64
_LONG_RUN = regex.compile("[" + "".join(rf"\p{{{s}}}" for s in SPACED) + rf"\p{{M}}]{{{MAX_WORD_CHARS + 1},}}")
FAMILY = {"Hiragana": "Han", "Katakana": "Han"}  # scripts one language mixes within a sentence: one run
MIN_MARGIN = 0.25  # how much surer lingua must be of another language than of the target (module docstring, 3.)
# The languages reasoning data and chain-of-thought drift mostly come in (sorted, as `check_languages` returns them).
DEFAULT_LANGUAGES = ("ar", "de", "en", "es", "fr", "it", "ja", "ko", "pt", "ru", "vi", "zh")


class Word(NamedTuple):
    start: int      # character offsets in the prose (the text with math and tags blanked out)
    end: int
    script: str
    n_words: int    # how many words it counts for (more than 1 for a run of an unspaced script)


def prose(text: str) -> str:
    """`text` with math, LaTeX commands, tags and overlong letter runs replaced by a space (no language's words)."""
    return _LONG_RUN.sub(" ", _NOT_PROSE.sub(" ", text))


def words(text: str) -> list[Word]:
    """The words of prose text (see the module docstring)."""
    out = []
    for m in _WORD.finditer(text):
        script, n = m.lastgroup, len(m.group())
        if script == "Latin" and n == 1:
            continue
        out.append(Word(m.start(), m.end(), script, math.ceil(n / CHARS_PER_WORD.get(script, n))))
    return out


def script_runs(found: list[Word]) -> list[list[Word]]:
    """Consecutive words of one script (Han and kana count as one) grouped together."""
    runs: list[list[Word]] = []
    for w in found:
        if runs and FAMILY.get(runs[-1][-1].script, runs[-1][-1].script) == FAMILY.get(w.script, w.script):
            runs[-1].append(w)
        else:
            runs.append([w])
    return runs


def language_codes() -> list[str]:
    """The ISO 639-1 codes lingua knows (75 languages)."""
    from lingua import Language

    return sorted(lang.iso_code_639_1.name.lower() for lang in Language.all())


def check_languages(language: str | None, languages, where: str) -> tuple[str, ...]:
    """The candidate codes, sorted, the target among them; a ConfigError naming the field and the fix."""
    known = language_codes()
    if isinstance(languages, str) or not hasattr(languages, "__iter__"):
        raise ConfigError(f"{where}.languages: must be a list of ISO 639-1 codes such as [en, zh], got {languages!r}")
    codes = list(languages)
    for field, code in [("language", language), *(("languages", c) for c in codes)]:
        if code is not None and (not isinstance(code, str) or code.lower() not in known):
            raise ConfigError(f"{where}.{field}: unknown language {code!r}; use an ISO 639-1 code lingua knows: "
                             f"{', '.join(known)}")
    codes = sorted({c.lower() for c in codes} | ({language.lower()} if language else set()))
    if len(codes) < 2:
        raise ConfigError(f"{where}.languages: {codes} - the identifier needs at least two candidate languages to "
                         f"choose from; add the languages a chain of thought may drift into (e.g. [en, zh])")
    return tuple(codes)


@functools.lru_cache(maxsize=8)
def detector(codes: tuple[str, ...]):
    """One lingua detector per candidate set and process (not picklable, so never part of a reward's state)."""
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    return LanguageDetectorBuilder.from_iso_codes_639_1(*(getattr(IsoCode639_1, c.upper()) for c in codes)).build()


def _code(language) -> str:
    return language.iso_code_639_1.name.lower()


class Section(NamedTuple):
    n_words: int        # words in it
    code: str | None    # lingua's language for it; None: no candidate writes its script
    text: str


def sections(text: str, codes: tuple[str, ...]) -> list[Section]:
    """`text`'s words grouped by language: script runs, each split by lingua into sections of one language."""
    det, text = detector(codes), prose(text)
    out = []
    for run in script_runs(words(text)):
        begin = run[0].start
        chunk = text[begin:run[-1].end]
        found = det.detect_multiple_languages_of(chunk)
        counts = [0] * (len(found) + 1)  # the last: words in no section (a script no candidate writes)
        for w in run:
            at = w.start - begin
            counts[next((i for i, s in enumerate(found) if s.start_index <= at < s.end_index), -1)] += w.n_words
        out += [Section(n, _code(s.language), chunk[s.start_index:s.end_index]) for s, n in zip(found, counts) if n]
        out += [Section(counts[-1], None, "")] if counts[-1] else []
    return out


def _counts_for(det, section: Section, target: str, confidences: dict) -> bool:
    """Whether a section counts for `target`: it is in the target, or lingua is not surer of its own language than
    of the target by MIN_MARGIN (short or ambiguous text; see the module docstring)."""
    if section.code is None or section.code == target:
        return section.code == target
    if section.text not in confidences:
        confidences[section.text] = {_code(c.language): c.value
                                     for c in det.compute_language_confidence_values(section.text)}
    values = confidences[section.text]
    return values.get(section.code, 0.0) - values.get(target, 0.0) < MIN_MARGIN


def target_share(cot: str, targets: tuple[str, ...], codes: tuple[str, ...]) -> float | None:
    """Share of the chain of thought's words in a target language (the best of `targets`, the languages the prompt
    may be read as); None when it has no words (only math or numbers)."""
    found, det, confidences = sections(cot, codes), detector(codes), {}
    total = sum(s.n_words for s in found)
    if not total:
        return None
    return max(sum(s.n_words for s in found if _counts_for(det, s, t, confidences)) for t in targets) / total


def prompt_languages(text: str, codes: tuple[str, ...]) -> tuple[str, ...]:
    """The languages `text` (a prompt) may be read as: each script run, taken as a whole, counts its words for
    lingua's best language on it and for every candidate within MIN_MARGIN of that best (a short prompt such as
    "Compute 2+2" reads as German, English or Italian); the languages with the most words. () when there are none
    (no words, or only in scripts no candidate writes)."""
    det, text = detector(codes), prose(text)
    counts: Counter = Counter()
    for run in script_runs(words(text)):
        ranked = det.compute_language_confidence_values(text[run[0].start:run[-1].end])  # best first
        for c in ranked:
            if c.value > 0 and ranked[0].value - c.value < MIN_MARGIN:
                counts[_code(c.language)] += sum(w.n_words for w in run)
    most = max(counts.values(), default=0)
    return tuple(sorted(code for code, n in counts.items() if n == most))


def chain_of_thought(text: str) -> str:
    """The first think block; when it was never closed (truncated), everything after `<think>`."""
    block = think_block(text)
    if block is not None:
        return block
    return text.split("<think>", 1)[1] if "<think>" in text and "</think>" not in text else ""


def consistency(cot: str, targets: tuple[str, ...], codes: tuple[str, ...]) -> float:
    """The reward of one chain of thought: 0.0 when there is none, 1.0 when it has text but no words (only math or
    numbers: nothing is in another language), else the target language's share of its words."""
    if not cot.strip():
        return 0.0
    share = target_share(cot, targets, codes)
    return 1.0 if share is None else share


@register("language_consistency")
class LanguageConsistencyReward:
    """DeepSeek-R1's language-consistency reward: the share of chain-of-thought words (inside `<think>`) in the
    target language, by the lingua language identifier (see the module docstring: what a word is, how scripts
    without spaces are counted, how short or ambiguous text is decided).

        score = #words in the target language / #words in the chain of thought

    Target: `language` (ISO 639-1 code such as "en", "fr", "zh") or, when null, the language of the prompt's last
    user turn (when a short prompt may be read as several, the one that scores best). `languages`: the candidates
    the identifier chooses among (null: `DEFAULT_LANGUAGES`; the target is always one; fewer is faster and surer).
    0.0 without a chain of thought; 1.0 when it holds only math; None when no target is found (null `language` and a
    prompt without words in a candidate language). Range [0, 1].
    Example (English prompt): "<think>First add 3 and 5</think>" -> 1.0; "<think>Zuerst addieren wir die Zahlen
    </think>" -> 0.0 (German); "<think>First we add 我们计算</think>" -> 0.6 (3 English words, 2 Chinese words).
    Speed: ~160 ms per GRPO batch of 64 completions of 300 characters on a loaded 2-core CPU (module docstring).
    """

    def __init__(self, language: str | None = None, languages: list[str] | None = None):
        self.language = language.lower() if isinstance(language, str) else language
        self.languages = check_languages(language, DEFAULT_LANGUAGES if languages is None else languages,
                                         "language_consistency")

    def __call__(self, completions, prompts=None, **kwargs) -> list[float | None]:
        prompts = prompts if prompts is not None else [None] * len(completions)
        read: dict[str, tuple[str, ...]] = {}  # a GRPO batch repeats each prompt num_generations times
        out = []
        for text, prompt in zip(responses(completions, prompts), prompts):
            asked = last_user_text(prompt)
            if self.language is None and asked not in read:
                read[asked] = prompt_languages(asked, self.languages)
            targets = (self.language,) if self.language else read[asked]
            out.append(consistency(chain_of_thought(text), targets, self.languages) if targets else None)
        return out
