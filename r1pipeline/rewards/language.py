"""Language consistency of the chain of thought (DeepSeek-R1, section 2.3.3).

Why scripts and not a language-identification library: R1's reward is a proportion of *words*, and statistical
identifiers (fastText lid, lingua, langid) are built for sentences; on single words they are unreliable (is "die"
English or German? "pain" English or French?) and several need model files downloaded at run time. The language
mixing R1 reports, and that small models show, is across scripts (English <-> Chinese, Russian, ...), which the
Unicode script of each word decides exactly, offline, in microseconds. Known limit: languages sharing a script
(English vs French, Chinese vs Japanese kanji) are not told apart, except that Japanese also accepts kana.

Words: a run of letters of one script is a word (Latin, Cyrillic, Greek, Arabic, Hebrew, Hangul, Indic, ...). Scripts
written without spaces (Han, Hiragana, Katakana, Thai, Lao, Khmer, Myanmar) count each character as a word, which is
the usual unit of Chinese text length and keeps "mixed" text comparable. Not words: digits, punctuation, symbols,
math (`$...$`, `\\(...\\)`, `\\[...\\]`, LaTeX commands), tags, and one-letter Latin tokens (variables like x, n).
"""
from __future__ import annotations

import regex

from r1pipeline.rewards.registry import register
from r1pipeline.rewards.text import completion_text, responses, think_block

UNSPACED = ("Han", "Hiragana", "Katakana", "Thai", "Lao", "Khmer", "Myanmar")
SPACED = ("Latin", "Cyrillic", "Greek", "Arabic", "Hebrew", "Hangul", "Devanagari", "Bengali", "Tamil", "Telugu",
          "Gujarati", "Gurmukhi", "Kannada", "Malayalam", "Armenian", "Georgian", "Ethiopic", "Sinhala", "Tibetan")
_WORD = regex.compile("|".join(
    [rf"(?P<{s}>\p{{{s}}})" for s in UNSPACED]
    + [rf"(?P<{s}>\p{{{s}}}[\p{{{s}}}\p{{M}}]*)" for s in SPACED]
    + [r"(?P<Other>\p{L})"]
))
# Math spans are bounded (1,000 characters) so that many unclosed `\(` cost linear, not quadratic, time.
_NOT_PROSE = regex.compile(r"\$\$.{0,1000}?\$\$|\$[^$\n]{0,1000}\$|\\\(.{0,1000}?\\\)|\\\[.{0,1000}?\\\]|\\[A-Za-z]+"
                           r"|</?[A-Za-z_]{1,20}>", regex.S)

JAPANESE = frozenset({"Han", "Hiragana", "Katakana"})
LANGUAGE_SCRIPTS: dict[str, frozenset[str]] = {
    **{code: frozenset({"Latin"}) for code in (
        "en", "fr", "de", "es", "it", "pt", "nl", "sv", "da", "no", "fi", "pl", "cs", "sk", "ro", "hu", "tr", "vi",
        "id", "ms", "tl", "sw", "ca", "hr", "sl", "lt", "lv", "et")},
    **{code: frozenset({"Cyrillic"}) for code in ("ru", "uk", "bg", "sr", "mk", "be", "kk", "mn")},
    **{code: frozenset({"Arabic"}) for code in ("ar", "fa", "ur", "ps")},
    **{code: frozenset({"Devanagari"}) for code in ("hi", "mr", "ne", "sa")},
    "zh": frozenset({"Han"}), "ja": JAPANESE, "ko": frozenset({"Hangul"}), "el": frozenset({"Greek"}),
    "he": frozenset({"Hebrew"}), "th": frozenset({"Thai"}), "bn": frozenset({"Bengali"}), "ta": frozenset({"Tamil"}),
    "hy": frozenset({"Armenian"}), "ka": frozenset({"Georgian"}),
}


def word_scripts(text: str) -> list[str]:
    """The script of every word of `text` (see the module docstring for what a word is)."""
    prose = _NOT_PROSE.sub(" ", text)
    return [m.lastgroup for m in _WORD.finditer(prose) if not (m.lastgroup == "Latin" and len(m.group()) == 1)]


def target_scripts(language: str) -> frozenset[str]:
    """Scripts of a language code ("en", "zh", ...) or of a script name ("Latin", "Han", ...)."""
    if language.lower() in LANGUAGE_SCRIPTS:
        return LANGUAGE_SCRIPTS[language.lower()]
    by_name = {s.lower(): s for s in (*UNSPACED, *SPACED)}
    if language.lower() in by_name:
        return frozenset({by_name[language.lower()]})
    raise ValueError(f"language_consistency.language: unknown language or script {language!r}; use one of "
                     f"{sorted(LANGUAGE_SCRIPTS)} or a script name {sorted((*UNSPACED, *SPACED))}")


def detect_scripts(text: str) -> frozenset[str] | None:
    """The target scripts of a prompt: its most frequent word script (Japanese when Han/kana text has kana)."""
    counts: dict[str, int] = {}
    for s in word_scripts(text):
        counts[s] = counts.get(s, 0) + 1
    counts.pop("Other", None)
    if not counts:
        return None
    top = max(counts, key=counts.get)
    if top in JAPANESE and (counts.get("Hiragana") or counts.get("Katakana")):
        return JAPANESE
    return frozenset({top})


def chain_of_thought(text: str) -> str:
    """The first think block; when it was never closed (truncated), everything after `<think>`."""
    block = think_block(text)
    if block is not None:
        return block
    return text.split("<think>", 1)[1] if "<think>" in text and "</think>" not in text else ""


def user_text(prompt) -> str:
    """The last user turn of a conversational prompt, or the prompt string itself."""
    if isinstance(prompt, list):
        users = [m for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        return completion_text([users[-1]]) if users else ""
    return "" if prompt is None else str(prompt)


def consistency(cot: str, target: frozenset[str]) -> float:
    """Share of the chain of thought's words written in a target script: 0.0 with no chain of thought at all,
    1.0 when it has text but no words (only math or numbers: nothing is in another language)."""
    if not cot.strip():
        return 0.0
    scripts = word_scripts(cot)
    if not scripts:
        return 1.0
    return sum(s in target for s in scripts) / len(scripts)


@register("language_consistency")
class LanguageConsistencyReward:
    """DeepSeek-R1's language-consistency reward: the proportion of chain-of-thought words (inside `<think>`)
    written in the target language, decided per word by Unicode script (see the module docstring: why not a
    language-ID library, what a word is). Target: `language` (ISO 639-1 code such as "en", "zh", "ru", "ja", or a
    script name) or, when null, the script of the prompt's last user turn.

        score = #words in the target script(s) / #words in the chain of thought

    0.0 when there is no chain of thought; 1.0 when it holds only math; None when the target cannot be determined
    (null `language` and a prompt without words). Range [0, 1].
    Example (English prompt): "<think>First add 3 and 5</think>" -> 1.0; "<think>First 我们 add</think>" -> 0.5
    (2 English words, 2 Chinese characters).
    """

    def __init__(self, language: str | None = None):
        self.language = language
        self._target = target_scripts(language) if language else None

    def __call__(self, completions, prompts=None, **kwargs) -> list[float | None]:
        prompts = prompts if prompts is not None else [None] * len(completions)
        out = []
        for text, prompt in zip(responses(completions, prompts), prompts):
            target = self._target or detect_scripts(user_text(prompt))
            out.append(None if target is None else consistency(chain_of_thought(text), target))
        return out
