"""Text helpers shared by rewards: what the model wrote, and where its answer is."""
from __future__ import annotations

import re

ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.S)
THINK_RE = re.compile(r"<think>(.*?)</think>", re.S)


def completion_text(completion) -> str:
    """A completion is a string (plain prompts) or a list of messages (conversational prompts)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion:
        return "".join(str(m.get("content", "")) for m in completion if isinstance(m, dict))
    return "" if completion is None else str(completion)


def prefill_text(prompt) -> str:
    """The assistant prefill that the model continued from (e.g. "Let me solve this step by step.\n<think>")."""
    if isinstance(prompt, list) and prompt and isinstance(prompt[-1], dict) and prompt[-1].get("role") == "assistant":
        return str(prompt[-1].get("content", ""))
    return ""


def responses(completions, prompts=None) -> list[str]:
    """The full assistant turns: prefill + completion, so structure checks see the prefilled `<think>`."""
    prompts = prompts if prompts is not None else [None] * len(completions)
    return [prefill_text(p) + completion_text(c) for p, c in zip(prompts, completions)]


def structured_responses(completions, prompts=None) -> list[str]:
    """Responses from the `<think>` on: a prefill's preamble ("Let me solve this step by step.\n<think>") was
    written by us, not the model, so structure checks start at the prefill's `<think>`."""
    prompts = prompts if prompts is not None else [None] * len(completions)
    out = []
    for p, c in zip(prompts, completions):
        prefill = prefill_text(p)
        start = prefill.find("<think>")
        out.append(prefill[max(start, 0):] + completion_text(c))
    return out


def extract_answer(text: str) -> str | None:
    """Content of the last `<answer>...</answer>` block, stripped; None when there is none."""
    found = ANSWER_RE.findall(text)
    return found[-1].strip() if found else None


def extract_thinking(text: str) -> str:
    """Content of the first think block (or everything before `</think>` when `<think>` was prefilled)."""
    m = THINK_RE.search(text)
    if m:
        return m.group(1)
    return text.split("</think>", 1)[0] if "</think>" in text else ""
