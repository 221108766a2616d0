"""Infer: batch-answer prompts from a file, or chat interactively, with the base model or any stage's model.

python -m r1pipeline stage=infer run.dir=<run> stage.inputs.model=sft2 stage.prompts_file=prompts.txt
python -m r1pipeline stage=infer run.dir=<run> stage.inputs.model=reasoning_rl     (interactive chat;
                                                                                        an empty line or EOF ends it)
A prompts file is .txt (one prompt per line) or .jsonl (`prompt`: a string, or `messages`: a conversation, per line).
Answers go to `<run>/infer/answers.jsonl` (appended, so several runs can share a run directory). A prompts file is
split across the processes of the hardware profile like any generating stage; chat runs in one process.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from r1pipeline import processes, sampling
from r1pipeline.errors import ConfigError
from r1pipeline.logs import stage_logging
from r1pipeline.rundir import input_model, stage_dir
from r1pipeline.sampling import open_engine, sample

log = logging.getLogger(__name__)


def check(cfg) -> None:
    """A prompts file that exists (chat, without one, runs in one process), and the generation block."""
    path = cfg.stage.prompts_file
    if path is None and cfg.hardware.num_processes > 1:
        raise ConfigError("stage.prompts_file: interactive chat runs in one process; give a prompts file to answer "
                          "it with several processes, or chat with hardware.num_processes=1")
    if path is not None and not Path(path).expanduser().is_file():
        raise ConfigError(f"stage.prompts_file: {path} does not exist; give a .txt or .jsonl file")
    sampling.check(cfg)


def read_prompts(path: str, system: str | None) -> list[list[dict]]:
    p = Path(path).expanduser()
    lines = [line for line in p.read_text().splitlines() if line.strip()]
    head = [{"role": "system", "content": system}] if system else []
    if p.suffix == ".jsonl":
        rows = [json.loads(line) for line in lines]
        return [r["messages"] if "messages" in r else head + [{"role": "user", "content": r["prompt"]}] for r in rows]
    return [head + [{"role": "user", "content": line}] for line in lines]


def chat(engine, cfg, stream_in=sys.stdin, stream_out=sys.stdout) -> list[dict]:
    """A multi-turn chat on the terminal; returns the conversation."""
    messages = [{"role": "system", "content": cfg.stage.system}] if cfg.stage.system else []
    while True:
        stream_out.write("you> ")
        stream_out.flush()
        line = stream_in.readline()
        if not line.strip():
            return messages
        messages.append({"role": "user", "content": line.strip()})
        reply = sample(engine, [messages], cfg.stage.generation, 1, cfg.seed).per_prompt[0][0].text
        messages.append({"role": "assistant", "content": reply})
        stream_out.write(f"model> {reply}\n")


def run(cfg) -> dict:
    stage = cfg.stage
    prompts = read_prompts(stage.prompts_file, stage.system) if stage.prompts_file else None
    path, random_init = input_model(cfg, stage.inputs.model)
    out = stage_dir(cfg)
    if processes.is_main_process():
        out.mkdir(parents=True, exist_ok=True)
    answers = Path(stage.output_file) if stage.output_file else out / "answers.jsonl"
    with stage_logging(out):
        with open_engine(cfg, path, random_init) as engine:
            if prompts is None:
                conversations, stats = [chat(engine, cfg)], {}
            else:  # split across processes, gathered on every one; the main process appends the answers
                sampled = sample(engine, prompts, stage.generation, 1, cfg.seed)
                conversations = [p + [{"role": "assistant", "content": s[0].text}]
                                 for p, s in zip(prompts, sampled.per_prompt)]
                stats = sampled.stats
        if processes.is_main_process():
            with answers.open("a") as f:
                f.writelines(json.dumps({"model": stage.inputs.model, "messages": c}) + "\n" for c in conversations)
        log.info("infer with %s (%s): %d conversations -> %s", stage.inputs.model, path, len(conversations), answers)
    processes.wait_for_everyone()
    return {"stage": "infer", "status": "complete", "model": path, "answers": str(answers),
            "conversations": conversations, "generation": stats}
