"""Language consistency by language, not script: R1's reward (the share of chain-of-thought words in the target
language) on mixed texts in several language pairs, the word count of scripts without spaces, short and ambiguous
text, and the rejection filter's mixed-language check agreeing with the reward on the same table."""
from __future__ import annotations

import pickle
import time

import pytest

from conftest import compose_cfg
from r1pipeline.errors import ConfigError
from r1pipeline.rejection_filter import is_mixed_language
from r1pipeline.rewards import validate_reward_config
from r1pipeline.rewards.language import (DEFAULT_LANGUAGES, LanguageConsistencyReward, chain_of_thought, detector,
                                         prompt_languages, prose, words)
from r1pipeline.rewards.text import last_user_text


def ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}, {"role": "assistant", "content": "<think>"}]


EN = ask("Using the numbers [3, 5, 2], create an equation that equals 16.")
FR = ask("Avec les nombres 3, 5 et 2, écrivez une équation dont le résultat est 16.")
PT = ask("Usando os números 3, 5 e 2, escreva uma equação cujo resultado seja 16.")
ZH = ask("请用数字 3、5、2 写出一个结果等于 16 的算式。")
JA = ask("数字の 3、5、2 を使って、答えが 16 になる式を作ってください。")
RU = ask("Составьте из чисел 3, 5 и 2 выражение, значение которого равно 16.")
SHORT = ask("Compute 2+2")  # one word: German, English or Italian for the identifier
NUMBERS = ask("1/2 = ?")     # no words at all

CASES = [
    # (prompt, chain of thought, params, expected: a score, a (low, high) bound, or None)
    # English prompt, English chain of thought (numbers are not words)
    (EN, "First add 3 and 5 to get 8, then multiply by 2 to get 16.", {}, 1.0),
    # en+fr: 8 English words, then a French sentence of 10
    (EN, "First we add the numbers, then we multiply. Ensuite, nous multiplions le résultat par deux pour obtenir "
         "seize.", {}, 8 / 18),
    # en+de: 9 English words and 8 German ones; where the boundary word "sum." falls is lingua's call
    (EN, "We add the two numbers and then double the sum. Dann prüfen wir das Ergebnis noch einmal.", {},
     (8 / 17, 10 / 17)),
    # en+zh, the issue's example: 8 English words + 5 Han characters = 3 Chinese words (one per character gave 8/13)
    (EN, "We add the numbers and then double them 所以答案是", {}, 8 / 11),
    # en+ja: まず/数/を/足/します (6 words: kana and kanji runs, two characters a word) + 4 English words
    (EN, "まず、数を足します。 Then multiply by two.", {}, 4 / 10),
    # en+ru: 7 Russian words, then 5 English ones
    (EN, "Делим один пополам, потом умножаем на два. Then the answer is sixteen.", {}, 5 / 12),
    # en+ko: 4 English words, 5 Korean ones
    (EN, "Then we add them. 그 다음 두 배로 합니다.", {}, 4 / 9),
    # the same script, another language: French, German, Spanish under an English prompt score 0 (scripts gave 1.0)
    (EN, "D'abord, on additionne les deux nombres, puis on multiplie la somme par deux.", {}, 0.0),
    (EN, "Zuerst addieren wir die Zahlen, dann multiplizieren wir das Ergebnis mit zwei.", {}, 0.0),
    (EN, "Primero sumamos los números y luego multiplicamos por dos.", {}, 0.0),
    # a French chain of thought under a French prompt
    (FR, "D'abord, on additionne les deux nombres, puis on multiplie la somme par deux.", {}, 1.0),
    # Portuguese under a Portuguese prompt: lingua hesitates with Spanish on "os números e" and the margin keeps it
    (PT, "Primeiro somamos os números e depois multiplicamos por dois.", {}, 1.0),
    # ... and Spanish under the same prompt is another language
    (PT, "Primero sumamos los números y luego multiplicamos por dos.", {}, 0.0),
    # Chinese prompt, Chinese chain of thought with a formula (一除以二得: 3 words)
    (ZH, "一除以二得 $0.5$", {}, 1.0),
    # Chinese prompt, drifting into English: 3 Chinese words, 5 English ones
    (ZH, "一除以二得 so the answer is half", {}, 3 / 8),
    # Japanese prompt: kanji and kana are both Japanese
    (JA, "半分は０.５です", {}, 1.0),
    # Russian prompt, one English word: a change of script is a change of language, even for one word
    (RU, "Делим один пополам okay", {}, 3 / 4),
    # pure maths: no word in any language
    (EN, " 3 + 5 = 8, 8 * 2 = 16", {}, 1.0),
    # LaTeX, numbers and one-letter variables are not words: Let, so, done
    (EN, "Let $x = \\frac{1}{2}$, so x = 0.5 \\cdot 1 done", {}, 1.0),
    # empty think block: nothing to be consistent, nothing rewarded
    (EN, "", {}, 0.0),
    # very short text: one word, or two the identifier is unsure of, are not called another language
    (EN, "okay", {}, 1.0),
    (EN, "Donc seize.", {}, 1.0),
    # ... but three words it is sure of are
    (EN, "Ensuite on multiplie.", {}, 0.0),
    # a prompt too short to tell (German, English or Italian): any language it may be read as is consistent ...
    (SHORT, "Four, because two and two make four.", {}, 1.0),
    (SHORT, "Vier, weil zwei und zwei vier ergeben.", {}, 1.0),
    # ... French is none of them
    (SHORT, "Quatre, parce que deux et deux font quatre.", {}, 0.0),
    # a prompt without words: target unknown, skipped ...
    (NUMBERS, "one half", {}, None),
    # ... unless the language is configured
    (NUMBERS, "one half", {"language": "en"}, 1.0),
    # a configured language overrides the prompt's
    (EN, "First add 3 and 5 to get 8, then multiply by 2 to get 16.", {"language": "zh"}, 0.0),
    # a language outside the candidates reads as the closest candidate (the known limit of a restricted set)
    (EN, "D'abord, on additionne les deux nombres, puis on multiplie la somme par deux.",
     {"languages": ["en", "zh"]}, 1.0),
    # a script no candidate writes counts against the target: 4 English words of 6
    (EN, "First divide it 我们计算 now", {"languages": ["en", "fr"]}, 4 / 6),
]
IDS = [f"{i}-{case[1][:24]}" for i, case in enumerate(CASES)]


def reward_of(prompt, cot: str, params: dict, closed: bool = True) -> float | None:
    completion = [{"role": "assistant", "content": cot + ("</think><answer>16</answer>" if closed else "")}]
    return LanguageConsistencyReward(**params)([completion], prompts=[prompt])[0]


def matches(score, expected) -> bool:
    if expected is None or score is None:
        return score is expected
    if isinstance(expected, tuple):
        return expected[0] <= score <= expected[1]
    return score == pytest.approx(expected)


@pytest.mark.parametrize("prompt,cot,params,expected", CASES, ids=IDS)
def test_language_consistency(prompt, cot, params, expected):
    score = reward_of(prompt, cot, params)
    assert matches(score, expected), (score, expected)


def test_an_unclosed_think_block_counts():
    # truncated generation: what follows <think> is the chain of thought; 2 English words, 1 Chinese word
    assert reward_of(EN, " First divide 一", {}, closed=False) == pytest.approx(2 / 3)
    assert chain_of_thought("Let me solve this.\n<think> First divide 一") == " First divide 一"


@pytest.mark.parametrize("threshold", [0.5, 0.95])
@pytest.mark.parametrize("prompt,cot,params,expected", [c for c in CASES if "language" not in c[2]],
                         ids=[i for i, c in zip(IDS, CASES) if "language" not in c[2]])
def test_the_rejection_filter_agrees_with_the_reward(prompt, cot, params, expected, threshold):
    """One definition: mixed = the reward's score below the filter's `min_language_share`, for a chain of thought
    with words and a prompt in a candidate language (an empty or math-only one is not mixed)."""
    reward = LanguageConsistencyReward(**params)
    response = "Let me solve this step by step.\n<think>" + cot + "</think><answer>16</answer>"
    score = reward([[{"role": "assistant", "content": response}]], prompts=[[prompt[0]]])[0]
    has_words = bool(words(prose(cot)))
    mixed = is_mixed_language(response, last_user_text(prompt), threshold, reward.languages)
    if score is None:  # no target in the prompt: the filter reads the chain of thought's own main language instead
        assert mixed is False
    else:
        assert mixed is (has_words and score < threshold)


@pytest.mark.parametrize("response,prompt,mixed", [
    # one language
    ("<think>Let x = 3; then 2x = 6.</think>", "Solve 2x = 6 for x, please.", False),
    # a whole chain of thought in French under an English prompt: not the prompt's language
    ("<think>D'abord, on additionne les deux nombres, puis on multiplie la somme par deux.</think>",
     "Using the numbers [3, 5, 2], create an equation that equals 16.", True),
    # English with a Chinese tail: 5 of 8 words
    ("<think>We add them: 3 + 5 = 8, 所以答案是八</think>", "Add the numbers 3 and 5 together.", True),
    # one Chinese word beside 21 English ones is under 5 %: kept
    ("<think>The answer to this question is eight, which is written 八 in Chinese, and that is all we need to say "
     "here.</think>",
     "What is five plus three? Answer in one word.", False),
    # prompt without words (a test key): the chain of thought's own main language is the reference
    ("<think>First add 3 and 5. 然后乘以二 得到十六。</think>", "p2", True),
    ("<think>计算 3 加 5 等于 8</think>", "p1", False),
    # no chain of thought, or only math: nothing is mixed
    ("", "Add the numbers 3 and 5 together.", False),
    ("<think>3 + 5 = 8</think>", "Add the numbers 3 and 5 together.", False),
])
def test_mixed_language(response, prompt, mixed):
    assert is_mixed_language(response, prompt, 0.95) is mixed


@pytest.mark.parametrize("text,counts", [
    # Chinese: a run of n characters is ceil(n / 2) words (我们 / 计算; 所以 / 答案 / 是)
    ("我们计算 所以答案是", [("Han", 2), ("Han", 3)]),
    # Japanese: kana and kanji runs apart; katakana with its prolonged sound mark (コンピューター: 7 characters)
    ("まず数を足します コンピューター", [("Hiragana", 1), ("Han", 1), ("Hiragana", 1), ("Han", 1),
                                 ("Hiragana", 2), ("Katakana", 4)]),
    # Thai: 10 characters (vowel signs and tone marks included), four a word
    ("สวัสดีครับ", [("Thai", 3)]),
    # one-letter variables, numbers, LaTeX and tags are not words
    ("Let $x^2$ be \\frac{a}{b}, so y = 2x <answer>", [("Latin", 1), ("Latin", 1), ("Latin", 1)]),
])
def test_words(text, counts):
    assert [(w.script, w.n_words) for w in words(prose(text))] == counts


@pytest.mark.parametrize("prompt,languages", [
    (EN, ("en",)),
    (FR, ("fr",)),
    (ZH, ("zh",)),
    (JA, ("ja",)),  # kana: Japanese, not Chinese
    (RU, ("ru",)),
    (SHORT, ("de", "en", "it")),  # within the margin of lingua's best guess
    (NUMBERS, ()),
])
def test_the_prompt_language(prompt, languages):
    assert prompt_languages(last_user_text(prompt), DEFAULT_LANGUAGES) == languages


def test_the_reward_pickles_and_builds_its_detector_once():
    reward = LanguageConsistencyReward(language="en", languages=["zh", "EN", "fr"])
    assert (reward.language, reward.languages) == ("en", ("en", "fr", "zh"))
    copy = pickle.loads(pickle.dumps(reward))
    texts = [[{"role": "assistant", "content": "<think>We add 我们计算</think>"}]]
    assert copy(texts) == reward(texts) == [pytest.approx(2 / 4)]
    assert detector(copy.languages) is detector(reward.languages)  # one per candidate set and process


def test_a_grpo_batch_takes_well_under_a_second():
    """64 completions of about 300 characters, a third of them mixed, with the default candidates: measured ~0.1 s
    on the 2-core CPU under load (module docstring); the first call in a process also loads lingua's models."""
    cot = ("First I add 3 and 5 to get 8, then I multiply by 2 to get 16. Let me check: (3 + 5) * 2 = 16, which "
           "matches the target. Each number is used once, so this works. Alternatively 5 * 2 = 10 and 10 + 3 = 13, "
           "too small. ")
    tails = ["Donc la réponse est seize.", "所以答案是十六。", "So the answer is sixteen."]
    completions = [[{"role": "assistant", "content": cot + tails[i % 3] + "</think><answer>16</answer>"}]
                   for i in range(64)]
    reward = LanguageConsistencyReward()
    reward(completions[:1], prompts=[EN])  # load the models
    start = time.perf_counter()
    scores = reward(completions, prompts=[EN] * 64)
    assert time.perf_counter() - start < 1.0
    assert min(scores) < 1.0 and scores[2] == 1.0


@pytest.mark.parametrize("params,message", [
    ({"language": "klingon"}, r"language_consistency\.language: unknown language 'klingon'; use an ISO 639-1 code"),
    ({"languages": ["en", "xx"]}, r"language_consistency\.languages: unknown language 'xx'"),
    ({"languages": "en"}, r"language_consistency\.languages: 'en' is not a list or null; set a list or null"),
    ({"languages": ["en"]}, r"language_consistency\.languages: \['en'\] - the identifier needs at least two"),
])
def test_bad_languages_are_config_errors(params, message):
    with pytest.raises(ConfigError, match=r"^reward\." + message):
        validate_reward_config({"language_consistency": params})


def test_the_shipped_mix_takes_a_candidate_list():
    cfg = compose_cfg(["stage=reasoning_rl", "stage.rewards.language_consistency.languages=[en,zh]"])
    validate_reward_config(cfg.stage.rewards)
    spec = {k: v for k, v in cfg.stage.rewards.language_consistency.items() if k != "weight"}
    assert LanguageConsistencyReward(**spec).languages == ("en", "zh")
