"""Cold start: a small SFT dataset of verified, readable long chains of thought (R1 section 2.3.1).

python -m r1pipeline stage=cold_start run.dir=<run with r1_zero> [stage.methods=[r1_zero,few_shot,direct,load]]

Methods, each adding rows with their provenance (method, source model, verification score):
  r1_zero   sample the R1-Zero model on training prompts, keep verified-correct outputs, rewrite them readably;
  few_shot  prompt a model with a few long-CoT examples, keep verified outputs, rewrite them;
  direct    ask a model to reason step by step and verify its answer, keep verified outputs, rewrite them;
  load      read an existing cold-start set in Bespoke-Stratos-17k's schema (`system`, `conversations`).
Writes `dataset.jsonl` (one `messages` conversation per row: system, user, readable assistant turn).
"""
from __future__ import annotations

import json
import logging
import re

from r1pipeline import sampling
from r1pipeline.data import build_dataset, draw_prompts, load_files
from r1pipeline.errors import ConfigError
from r1pipeline.processes import is_main_process
from r1pipeline.rejection_filter import Dedupe
from r1pipeline.rewards.text import extract_answer
from r1pipeline.rundir import StageFailed, execute_stage, input_model
from r1pipeline.sampling import open_engine, sample, sft_row, task_messages
from r1pipeline.typecheck import number
from r1pipeline.verify import Verifier, check_verifier

log = logging.getLogger(__name__)
GENERATING = ("r1_zero", "few_shot", "direct")  # the methods that sample a model
METHODS = (*GENERATING, "load")
TAGS = re.compile(r"</?(think|answer)>")
ANSWER_LEAD = re.compile(r"^(so,?\s+)?(the\s+)?(final\s+)?answer\s+is\s*:?\s*", re.I)


# ------------------------------------------------------------------ the readable rewrite (R1's "reasoning | summary")

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


# ------------------------------------------------------------------ the methods

def method_prompt(method: str, prompt: list[dict], stage) -> list[dict]:
    """The conversation a method samples from, built from the dataset's prompt (system, user, prefill)."""
    if method == "r1_zero":
        return prompt
    system = [m for m in prompt if m["role"] == "system"]
    user = next(m for m in prompt if m["role"] == "user")
    prefill = [m for m in prompt if m["role"] == "assistant"]
    if method == "direct":
        return [*system, {"role": "user", "content": f"{user['content']}\n\n{stage.direct_instruction}"}, *prefill]
    shots = [turn for ex in stage.few_shot_examples
             for turn in ({"role": "user", "content": ex.question}, {"role": "assistant", "content": ex.response})]
    return [*system, *shots, user, *prefill]


def generated_rows(method: str, model_name: str, engine, data, verifier, cfg, store=None) -> tuple[list[dict], dict]:
    """Sample, verify, rewrite and dedupe one generating method's rows; returns (rows, stats). Batches already
    sampled into `store` are read back (r1pipeline/sampling.py)."""
    stage = cfg.stage
    prompts = [method_prompt(method, r["prompt"], stage) for r in data]
    sampled = sample(engine, prompts, stage.generation, stage.samples_per_prompt, cfg.seed, list(data), verifier,
                     store)
    rows, dedupe, verified = [], Dedupe(), 0
    for row, prompt, samples in zip(data, prompts, sampled.per_prompt):
        for s in samples:
            if s.score < stage.min_score:
                continue
            verified += 1
            readable = refine(s.response, stage.template, verifier.answers([prompt], [s.text])[0])
            if readable is None or not dedupe.first(task_messages(row["prompt"])[-1]["content"], readable):
                continue
            rows.append(sft_row(row, readable, method, model_name, s.score))
    stats = {"prompts": len(prompts), "samples": sum(map(len, sampled.per_prompt)), "verified": verified,
             "kept": len(rows), "generation": sampled.stats}
    log.info("cold start %s (%s): %d samples, %d verified, %d kept", method, model_name, stats["samples"],
             verified, len(rows))
    return rows, stats


THOUGHT = re.compile(r"<\|begin_of_thought\|>(.*?)<\|end_of_thought\|>", re.S)
SOLUTION = re.compile(r"<\|begin_of_solution\|>(.*?)<\|end_of_solution\|>", re.S)


def stratos_to_readable(value: str) -> str:
    """Bespoke-Stratos' thought/solution markers to our think/answer tags (unmarked text is kept as is)."""
    thought, solution = THOUGHT.search(value), SOLUTION.search(value)
    if not (thought and solution):
        return value.strip()
    return f"<think>\n{thought.group(1).strip()}\n</think>\n<answer>{solution.group(1).strip()}</answer>"


def loaded_rows(load_cfg) -> tuple[list[dict], dict]:
    """Rows from a Bespoke-Stratos-17k-schema dataset (hub id or local copy)."""
    ds = load_files(load_cfg)
    missing = {"system", "conversations"} - set(ds.column_names)
    if missing:
        raise ConfigError(f"stage.load.path: {load_cfg.path} lacks column(s) {sorted(missing)}; the load method "
                          f"reads Bespoke-Stratos-17k's schema (system, conversations[from, value])")
    if load_cfg.limit:
        ds = ds.select(range(min(load_cfg.limit, len(ds))))
    roles = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant"}
    rows = []
    for r in ds:
        turns = [{"role": roles[t["from"]], "content": t["value"] if roles[t["from"]] == "user"
                  else stratos_to_readable(t["value"])} for t in r["conversations"]]
        system = [{"role": "system", "content": r["system"]}] if r["system"] else []
        rows.append({"messages": system + turns, "answer": "", "method": "load", "source_model": load_cfg.path,
                     "score": None})
    return rows, {"loaded": len(rows), "kept": len(rows)}


def training_prompts(cfg):
    train = build_dataset(cfg.dataset, cfg.model.path)["train"]
    return draw_prompts(train, cfg.stage.num_prompts, cfg.seed, cfg.stage.name)


def check(cfg) -> None:
    """The stage block: known methods, a model for each generating one, its check, sizes, and examples for few_shot;
    the generation block and the dataset's training rows when a method samples."""
    stage = cfg.stage
    unknown = [m for m in stage.methods if m not in METHODS]
    if unknown or not stage.methods:
        raise ConfigError(f"stage.methods: {list(stage.methods)} must be a non-empty list of {list(METHODS)}")
    if "few_shot" in stage.methods and not stage.few_shot_examples:
        raise ConfigError("stage.few_shot_examples: the few_shot method needs at least one {question, response}")
    if not any(m in GENERATING for m in stage.methods):
        return
    for method in (m for m in stage.methods if m in GENERATING):
        if method not in (stage.inputs.get("model") or {}):
            raise ConfigError(f"stage.inputs.model.{method}: the {method} method needs a model to sample "
                              f"(base or a stage name)")
    sampling.check_training_draw(cfg)
    number(stage.min_score, "stage.min_score", example=1.0)


def run(cfg) -> dict:
    stage = cfg.stage
    sources = {m: stage.inputs.model[m] for m in stage.methods if m in GENERATING}
    paths = {name: input_model(cfg, name, f"inputs.model.{m}") for m, name in sources.items()}  # fails early
    data = training_prompts(cfg) if sources else None
    if sources:  # the columns the check reads, before any model loads
        check_verifier(stage.verify, set(data.column_names))
    inputs = {"models": {m: paths[src][0] for m, src in sources.items()}, "dataset": cfg.dataset.name}

    def work(out):
        verifier = Verifier(stage.verify) if sources else None
        rows, stats = [], {}
        for name in dict.fromkeys(sources.values()):  # load each source model once
            with open_engine(cfg, *paths[name]) as engine:
                for method in [m for m, src in sources.items() if src == name]:
                    new, stats[method] = generated_rows(method, name, engine, data, verifier, cfg,
                                                        out / "batches" / method)
                    rows += new
        if "load" in stage.methods:
            new, stats["load"] = loaded_rows(stage.load)
            rows += new
        if not rows:
            raise StageFailed(f"stage cold_start kept no rows ({json.dumps(stats)}); sample more "
                              f"(stage.samples_per_prompt, stage.num_prompts), lower stage.min_score, or add "
                              f"method load with a local cold-start set", stats)
        dataset = out / "dataset.jsonl"
        if is_main_process():
            dataset.write_text("".join(json.dumps(r) + "\n" for r in rows))
        log.info("cold start: %d rows -> %s", len(rows), dataset)
        return {"outputs": {"dataset": str(dataset)}, "rows": len(rows),
                "metrics": {"rows": len(rows), "per_method": stats}}

    return execute_stage(cfg, inputs, work)
