"""Text helpers shared by rewards: what the model wrote, and where its answer is."""
from __future__ import annotations


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
    """Content of the last `<answer>...</answer>` block (from the last `<answer>` before the last `</answer>`),
    stripped; None when there is none."""
    # str.rfind, not a regex: `<answer>(.*?)</answer>` rescans to the end from every unclosed `<answer>`,
    # quadratic on a long run of them (minutes for 200k characters).
    end = text.rfind("</answer>")
    start = text.rfind("<answer>", 0, max(end, 0))
    return text[start + len("<answer>"):end].strip() if start >= 0 else None


def extract_thinking(text: str) -> str:
    """Content of the first think block (or everything before `</think>` when `<think>` was prefilled)."""
    block = think_block(text)
    if block is not None:
        return block
    return text.split("</think>", 1)[0] if "</think>" in text else ""


def think_block(text: str) -> str | None:
    """Content from the first `<think>` to the next `</think>`; None when there is no such pair. (str.find: the
    regex equivalent is quadratic on many unclosed `<think>`.)"""
    start = text.find("<think>")
    end = text.find("</think>", start + len("<think>")) if start >= 0 else -1
    return text[start + len("<think>"):end] if end >= 0 else None
