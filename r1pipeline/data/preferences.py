"""Offline data for R1's last stage: a small preference set (for `stage=reward_model`) and general prompts (for
`stage=align`), both built from templates with a seed, plus a loader for preference data in the usual chosen/rejected
schema (hub or local).

Each preference pair is one request with a better and a worse answer, for helpfulness (a direct, correct answer vs a
dodge or a wrong one) or for harmlessness (a refusal with a safe alternative vs compliance with a harmful request).
Rows are conversational, as TRL's RewardTrainer reads them: `prompt` (a user turn), `chosen`, `rejected` (one
assistant turn each), plus `aspect` (helpful | harmless).
"""
from __future__ import annotations

import random

from omegaconf import OmegaConf

from r1pipeline.errors import ConfigError

WORDS = ["river", "lantern", "orbit", "maple", "signal", "harbor", "pepper", "canvas", "glacier", "violin", "meadow",
         "copper", "falcon", "ribbon", "tunnel", "walnut"]
HARMFUL = ["pick the lock of my neighbour's door", "write a message that bullies a classmate",
           "make a fake doctor's note", "get into my coworker's email account", "cheat the parking meter",
           "spread a false rumour about a shop"]

# (request, better answer, worse answer) from a word list; helpful ones have a checkable best answer.
HELPFUL = [
    lambda w: (f"Write the word '{w[0]}' in capital letters.", w[0].upper(), "I am not sure what you mean."),
    lambda w: (f"How many letters are in the word '{w[0]}'?", f"The word '{w[0]}' has {len(w[0])} letters.",
               f"The word '{w[0]}' has {len(w[0]) + 2} letters."),
    lambda w: (f"Sort these words alphabetically: {', '.join(w[:3])}", ", ".join(sorted(w[:3])),
               ", ".join(sorted(w[:3], reverse=True))),
    lambda w: (f"Give me a short sentence that uses the word '{w[0]}'.", f"The {w[0]} was easy to see from here.",
               "Sentences are groups of words."),
]


def builtin_preferences(n: int, seed: int) -> list[dict]:
    """`n` pairs, alternating helpfulness and harmlessness, drawn by `seed`."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        if i % 2 == 0:
            user, good, bad = HELPFUL[(i // 2) % len(HELPFUL)](rng.sample(WORDS, 4))
            aspect = "helpful"
        else:
            harm = HARMFUL[(i // 2) % len(HARMFUL)]
            user = f"Tell me how to {harm}."
            good = f"I can't help with that: it could hurt someone. If something is bothering you, I can help you " \
                   f"find a fair way to deal with it."
            bad = f"Sure. Here is how to {harm}: first, make sure nobody is watching."
            aspect = "harmless"
        rows.append({"prompt": [{"role": "user", "content": user}], "chosen": [{"role": "assistant", "content": good}],
                     "rejected": [{"role": "assistant", "content": bad}], "aspect": aspect})
    return rows


def builtin_general_prompts(n: int, seed: int) -> list[dict]:
    """`n` general (non-reasoning) requests, everyday and harmful ones mixed, drawn by `seed`: rows with `question`."""
    rng = random.Random(seed + 1)  # other draws than the preference set's
    questions = []
    for i in range(n):
        if i % 3 == 2:
            questions.append(f"Tell me how to {HARMFUL[rng.randrange(len(HARMFUL))]}.")
        else:
            questions.append(HELPFUL[rng.randrange(len(HELPFUL))](rng.sample(WORDS, 4))[0])
    return [{"question": q} for q in questions]


def check_source(block, field: str) -> None:
    """`source: builtin | hub | local` with a `path` for hub and local."""
    if block.source not in ("builtin", "hub", "local"):
        raise ConfigError(f"{field}.source: {block.source!r} is not builtin, hub or local")
    if block.source != "builtin" and not block.path:
        raise ConfigError(f"{field}.path: source {block.source} needs a path (a hub id or a local file/directory)")
    if block.size is None and block.source != "builtin":
        return  # every row of the hub or local set
    if not isinstance(block.size, int) or isinstance(block.size, bool) or block.size < 1:
        raise ConfigError(f"{field}.size: {block.size!r} must be a number of rows, 1 or more (null: every row of a "
                          f"hub or local set)")


def load_preferences(block) -> list[dict]:
    """The preference pairs of a `preferences` block: the built-in set, or a hub dataset / local file with `chosen`
    and `rejected` (strings or assistant turns) and optionally `prompt` (a string or turns; without it the prompt is
    implicit in chosen/rejected, as in Anthropic/hh-rlhf), shuffled by `seed` and cut to `size` rows (null: all)."""
    if block.source == "builtin":
        return builtin_preferences(block.size, block.seed)
    from r1pipeline.data import load_files

    ds = load_files(OmegaConf.create({"source": block.source, "path": block.path, "subset": block.get("subset"),
                                      "split": block.get("split", "train")}))
    missing = {"chosen", "rejected"} - set(ds.column_names)
    if missing:
        raise ConfigError(f"stage.preferences.path: {block.path} lacks {sorted(missing)}; a preference set needs "
                          f"`chosen` and `rejected` (and optionally `prompt`) columns (it has {ds.column_names})")
    keep = [c for c in ("prompt", "chosen", "rejected") if c in ds.column_names]
    rows = [{c: r[c] for c in keep} for r in ds]
    random.Random(block.seed).shuffle(rows)
    return rows if block.size is None else rows[:block.size]
