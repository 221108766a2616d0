"""Sample -> verify -> rows, split across processes: the one path of the generating stages (cold start, rejection
sampling, eval; infer without a verifier).

`open_engine` loads the model a stage samples, whole, onto this process's device as r1pipeline/processes.py decides
it, or vLLM's offline engine with `rollout=vllm`. `sample` renders the prompts, plans fixed batches of the global
sequence list (r1pipeline/generation.py: each batch seeded from (seed, batch index)), gives each process whole
batches (`processes.split`), samples and verifies them there, and gathers every process's samples on every process
(`processes.exchange`). So every process returns the same `Sampled`, identical for 1 or N processes at the same
batch size, and the stage's main process alone writes. Per-process counts (batches, sequences, tokens, device) are
in `stats["per_process"]`, which the stages put into their summary and manifest. `sft_row` turns a kept sample into
the SFT conversation that cold start and rejection sampling write.
"""
from __future__ import annotations

import contextlib
import gc
import logging
from dataclasses import dataclass

import torch

from r1pipeline import processes
from r1pipeline.errors import ConfigError
from r1pipeline.generation import Params, Sequences, plan_batches, render, run_batches, throughput
from r1pipeline.models import load_full_model, load_tokenizer
from r1pipeline.rewards.text import prefill_text
from r1pipeline.typecheck import number

log = logging.getLogger(__name__)


def check(cfg) -> None:
    """What every generating stage checks: its `generation` block, and an engine that can sample its models."""
    g, where = cfg.stage.generation, "stage.generation"
    number(g.max_new_tokens, f"{where}.max_new_tokens", low=1, integer=True, example=256)
    number(g.temperature, f"{where}.temperature", low=0, example=0.6)
    number(g.top_p, f"{where}.top_p", low=0, high=1, example=0.95)
    if g.top_p == 0:
        raise ConfigError(f"{where}.top_p: 0 keeps no token; use a share in (0, 1], e.g. {where}.top_p=0.95")
    number(g.batch_size, f"{where}.batch_size", low=1, integer=True, example=16)
    if cfg.rollout.engine == "vllm" and cfg.model.random_init:
        raise ConfigError("rollout=vllm: vLLM samples checkpoints from disk and model.random_init builds the weights "
                          "in memory; use rollout=hf for random-weight models")


@dataclass
class Engine:
    """What a generating stage samples with."""
    name: str              # hf | static | vllm
    model: object          # a transformers model on `device`, or a vllm.LLM
    tok: object
    device: torch.device
    rollout: object


@dataclass(frozen=True)
class Sample:
    prompt: int            # index into the prompt list
    index: int             # which of the prompt's n samples (0..n-1)
    text: str              # what the model generated after the prompt and its prefill
    response: str          # prefill + text: the assistant turn as a reader sees it
    tokens: int            # new tokens, up to and including the end-of-turn token
    score: float | dict | None  # verification score; {reading: score} with verify.Verifiers; None without one
    process: int           # the process that sampled it


@dataclass
class Sampled:
    per_prompt: list[list[Sample]]   # [num_prompts][n]
    stats: dict                      # throughput of all processes, and `per_process` counts


@contextlib.contextmanager
def open_engine(cfg, path: str, random_init: bool):
    """The tokenizer and model at `path`, placed on this process's device (or a vLLM engine on it); its memory is
    given back on exit, before a stage loads the next model."""
    tok, device = load_tokenizer(path), processes.device()
    if cfg.rollout.engine == "vllm":
        from r1pipeline import vllm_engine

        engine = Engine("vllm", vllm_engine.load(path, cfg.model, cfg.rollout), tok, device, cfg.rollout)
    else:
        model = load_full_model(cfg.model, path, cfg.hardware.use_cpu, random_init).to(device)
        engine = Engine(cfg.rollout.engine, model, tok, device, cfg.rollout)
    log.info("sampling %s with %s on %s (process %d of %d)", path, engine.name, device, processes.process_index(),
             processes.state().num_processes)
    try:
        yield engine
    finally:
        engine.model = None
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()


def _run(engine: Engine, texts: list[str], batches, params: Params, seed: int) -> Sequences:
    if engine.name == "vllm":
        from r1pipeline import vllm_engine

        return vllm_engine.run_batches(engine.model, engine.tok, texts, batches, params, seed)
    return run_batches(engine.model, engine.tok, texts, batches, params, seed, engine.device, engine.rollout)


def _verified(seqs: Sequences, prompts, rows, n: int, verifier) -> list[Sample]:
    """This process's samples with their verification scores (rows[p] holds prompt p's dataset columns)."""
    owners = [i // n for i in seqs.indices]
    scores = (verifier.score([prompts[p] for p in owners], seqs.texts, [rows[p] for p in owners])
              if verifier is not None else [None] * len(owners))
    me = processes.process_index()
    return [Sample(p, i % n, text, prefill_text(prompts[p]) + text, tokens, score, me)
            for p, i, text, tokens, score in zip(owners, seqs.indices, seqs.texts, seqs.num_tokens, scores)]


def sample(engine: Engine, prompts: list, gen_cfg, n: int, seed: int, rows=None, verifier=None) -> Sampled:
    """`n` samples of every prompt (conversations), verified against `rows` (one dict of dataset columns per prompt)
    when a `verifier` is given; split across processes and gathered on all of them."""
    params = Params.of(gen_cfg)
    texts = [render(engine.tok, p) for p in prompts for _ in range(n)]
    plan = plan_batches(len(prompts), n, params.batch_size)
    with processes.split(plan) as mine:
        seqs = _run(engine, texts, mine, params, seed)
        local = _verified(seqs, prompts, rows, n, verifier)
    counts = {"process": processes.process_index(), "device": str(engine.device), **seqs.counts()}
    gathered = processes.exchange([(counts, local)])
    per_process = [c for c, _ in gathered]
    samples = sorted((s for _, part in gathered for s in part), key=lambda s: (s.prompt, s.index))
    stats = throughput(per_process, params.batch_size)
    stats["per_process"] = [{k: v for k, v in c.items() if k not in ("bound_s", "engine")} for c in per_process]
    log.info("sampled %d sequences on %d process(es): %.1f tokens/s (memory-bandwidth bound %.0f tokens/s)",
             len(samples), len(per_process), stats["tokens_per_s"], stats["bound_tokens_per_s"])
    return Sampled([samples[p * n:(p + 1) * n] for p in range(len(prompts))], stats)


def task_messages(prompt: list[dict]) -> list[dict]:
    """The dataset's conversation without the assistant prefill: what SFT trains the model to answer."""
    return [m for m in prompt if m["role"] != "assistant"]


def sft_row(row: dict, response: str, method: str, source_model: str, score: float) -> dict:
    """A kept sample as one SFT conversation (the task without its prefill, then `response`), with its provenance."""
    return {"messages": [*task_messages(row["prompt"]), {"role": "assistant", "content": response}],
            "answer": row["answer"], "method": method, "source_model": source_model, "score": round(score, 4)}
