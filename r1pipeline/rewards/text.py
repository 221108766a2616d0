"""Text helpers shared by the rewards and everything that reads samples (callbacks, sampling, eval, the stages):
what the prompt asked, what the model wrote, and where its answer is."""
from __future__ import annotations

import re

from r1pipeline.errors import ConfigError


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


def last_user_text(prompt) -> str:
    """The last user turn of a conversational prompt, or the prompt string itself."""
    if isinstance(prompt, list):
        users = [m for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        return completion_text([users[-1]]) if users else ""
    return "" if prompt is None else str(prompt)


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


def think_block(text: str) -> str | None:
    """Content from the first `<think>` to the next `</think>`; None when there is no such pair. (str.find: the
    regex equivalent is quadratic on many unclosed `<think>`.)"""
    start = text.find("<think>")
    end = text.find("</think>", start + len("<think>")) if start >= 0 else -1
    return text[start + len("<think>"):end] if end >= 0 else None


# ------------------------------------------------------------------------------------------------ where the answer is

ANSWER_FROM = ("tags", "strict", "anywhere")

# One think block, then one answer block, nothing but whitespace around or between; no nested/extra tags.
R1_FORMAT = re.compile(r"^\s*<think>((?:(?!</?think>|</?answer>).)*)</think>\s*<answer>((?:(?!</?think>|</?answer>).)*)"
                       r"</answer>\s*$", re.S)
# A number as a final answer: optional minus (not a binary minus after a digit, letter or ")"), thousands
# separators, decimals, a fraction ("3/4").
_NUMBER = re.compile(r"(?:(?<![\w)])-)?\d+(?:,\d{3})*(?:\.\d+)?(?:/\d+)?")
# A run of arithmetic: digits, + - * /, parentheses, "=" and spaces (runs without a digit are dropped afterwards; a
# pattern that demanded the digit itself would backtrack quadratically over a long digit-free run).
_EXPRESSION = re.compile(r"[\d\s+\-*/().=]+")


def check_answer_from(value: str, reward: str) -> str:
    """The `answer_from` parameter of a verifying reward, checked (ValueError names the field and the choices)."""
    if value not in ANSWER_FROM:
        raise ConfigError(f"{reward}.answer_from: {value!r} is not one of {', '.join(ANSWER_FROM)}")
    return value


def r1_answer(text: str) -> str | None:
    """The answer block's content when `text` (from its `<think>` on) is in R1 format with a non-empty think block
    and a non-empty answer (what the `format` reward accepts); else None."""
    m = R1_FORMAT.match(text)
    if m is None or not m.group(1).strip() or not m.group(2).strip():
        return None
    return m.group(2).strip()


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (balanced braces; an unclosed one runs to the end), or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    i, depth = start + len("\\boxed{"), 1
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j].strip()
    return text[i:].strip()


def last_number(text: str) -> str | None:
    """The last number in `text`, thousands separators dropped ("1,234" -> "1234"); None when there is none."""
    found = _NUMBER.findall(text)
    return found[-1].replace(",", "") if found else None


def last_expression(text: str) -> str | None:
    """The last run of arithmetic in `text` ("so (3 + 5) * 2 = 16." -> "(3 + 5) * 2 = 16"); None when there is none."""
    found = [m.strip().rstrip(".= ").strip() for m in _EXPRESSION.findall(text)]
    found = [f for f in found if any(c.isdigit() for c in f)]
    return found[-1] if found else None


def free_answer(text: str, kind: str = "number") -> str | None:
    """The response's final answer wherever it stands: the last `<answer>` block when there is one, else the last
    `\\boxed{}`, else the last number (`kind="number"`) or arithmetic expression (`kind="expression"`)."""
    block = extract_answer(text)
    if block is not None:
        return block
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    return last_expression(text) if kind == "expression" else last_number(text)


def final_answers(completions, prompts=None, answer_from: str = "tags", kind: str = "number") -> list[str | None]:
    """The answer each response gives, read as `answer_from` says (None = no answer):

    - `tags`: the last `<answer>` block, wherever it stands (an empty think block or text around it is allowed);
    - `strict`: the answer block of a response in R1 format (`<think>` non-empty `</think><answer>…</answer>`,
      nothing else; the prefill's preamble before its `<think>` is ours and ignored);
    - `anywhere`: format-free, see `free_answer` (`kind`: what a bare final answer looks like).
    """
    if answer_from == "strict":
        return [r1_answer(t) for t in structured_responses(completions, prompts)]
    texts = responses(completions, prompts)
    if answer_from == "tags":
        return [extract_answer(t) for t in texts]
    return [free_answer(t, kind) for t in texts]
