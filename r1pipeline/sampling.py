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

Resume: given a `store` directory (the stages pass one under their stage directory, `batches/`), every batch is
written there as soon as it is sampled (`batch-<index>.json`, renamed into place, by the process that sampled it),
and a batch whose file is already there, made from the same weights (`weights_id`) with the same engine, prompts,
sampling parameters and seed, is read back instead of sampled again. Since each batch has its own seed, a stage
killed mid-generation and run again with run.resume=true samples only the batches it had not written and ends with
exactly the samples of an uninterrupted run; `restored_batches` in `stats["per_process"]` counts the batches read
back.
"""
from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

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


def check_training_draw(cfg) -> None:
    """What every stage that samples training prompts checks (cold start, rejection sampling, distill): prompts and
    samples per prompt, the verification, the generation block (`check`), and a dataset with training rows."""
    from r1pipeline.data import check_training_split
    from r1pipeline.verify import check_verifier

    stage = cfg.stage
    if stage.num_prompts is not None:  # null: every training prompt (a full-size run, experiment=r1_full)
        number(stage.num_prompts, "stage.num_prompts", low=1, integer=True, example=64)
    number(stage.samples_per_prompt, "stage.samples_per_prompt", low=1, integer=True, example=4)
    check_verifier(stage.verify)
    check(cfg)
    check_training_split(cfg.dataset, stage.name)


@dataclass
class Engine:
    """What a generating stage samples with."""
    name: str              # hf | static | vllm
    model: object          # a transformers model on `device`, or a vllm.LLM
    tok: object
    device: torch.device
    rollout: object
    weights: str = ""      # which weights: `weights_id` of the checkpoint (a stored batch must come from the same)


def weights_id(path: str, random_init: bool = False) -> str:
    """An identity of the weights at `path` for stored batches: the path with the name, size and modification time
    of each weight file in it (a stage that trained again writes new ones), or the path alone for a hub id."""
    d = Path(path)
    files = sorted(p for p in d.glob("*") if p.suffix in (".safetensors", ".bin")) if d.is_dir() else []
    stamp = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return json.dumps([str(path), bool(random_init), stamp])


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

        engine = Engine("vllm", vllm_engine.load(path, cfg.model, cfg.rollout), tok, device, cfg.rollout,
                        weights_id(path, random_init))
    else:
        model = load_full_model(cfg.model, path, cfg.hardware.use_cpu, random_init).to(device)
        engine = Engine(cfg.rollout.engine, model, tok, device, cfg.rollout, weights_id(path, random_init))
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


VLLM_CHUNK = 8  # batches per vLLM call when batches are stored (vLLM schedules a call's sequences itself)


def batch_key(engine: Engine, params: Params, seed: int, index: int, texts: list[str]) -> str:
    """What a stored batch must have been sampled from to stand for batch `index` now: the same weights and engine,
    the rendered prompts of its sequences (chat template included), the sampling parameters and the seed."""
    blob = json.dumps({"engine": engine.name, "weights": engine.weights, "params": asdict(params), "seed": seed,
                       "batch": index, "texts": texts})
    return hashlib.sha256(blob.encode()).hexdigest()


def _batch_file(store: Path, index: int) -> Path:
    return store / f"batch-{index:06d}.json"


def _read_batch(store: Path, index: int, key: str) -> dict | None:
    try:
        saved = json.loads(_batch_file(store, index).read_text())
    except (OSError, ValueError):
        return None  # not written yet (a file half-written by a kill was never renamed into place)
    return saved if isinstance(saved, dict) and saved.get("key") == key else None


def _write_batch(store: Path, index: int, batch: dict) -> None:
    path = _batch_file(store, index)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(batch))
    os.replace(tmp, path)


def _stored_run(engine: Engine, texts: list[str], batches, params: Params, seed: int, store: Path) -> Sequences:
    """`_run` over `batches`, with every batch read back from `store` when it is there and written there as soon as
    it is sampled."""
    store.mkdir(parents=True, exist_ok=True)
    done, todo = {}, []
    for b, indices in batches:
        key = batch_key(engine, params, seed, b, [texts[i] for i in indices])
        saved = _read_batch(store, b, key)
        if saved is not None:
            done[b] = saved
        else:
            todo.append((b, indices, key))
    restored = len(done)
    step = VLLM_CHUNK if engine.name == "vllm" else 1
    for start in range(0, len(todo), step):
        chunk = todo[start:start + step]
        seqs = _run(engine, texts, [(b, indices) for b, indices, _ in chunk], params, seed)
        at = {i: j for j, i in enumerate(seqs.indices)}
        tokens = sum(seqs.num_tokens) or 1
        for b, indices, key in chunk:
            rows = [at[i] for i in indices]
            share = sum(seqs.num_tokens[j] for j in rows) / tokens  # a multi-batch call's time, shared by tokens
            batch = {"key": key, "indices": indices, "texts": [seqs.texts[j] for j in rows],
                     "num_tokens": [seqs.num_tokens[j] for j in rows], "wall_s": seqs.wall_s * share,
                     "bound_s": seqs.bound_s * share}
            _write_batch(store, b, batch)
            done[b] = batch
    out = Sequences([], [], [], 0.0, 0.0, engine.name, len(batches), restored)
    for b, _ in batches:
        batch = done[b]
        out.indices += batch["indices"]
        out.texts += batch["texts"]
        out.num_tokens += batch["num_tokens"]
        out.wall_s += batch["wall_s"]
        out.bound_s += batch["bound_s"]
    if restored:
        log.info("read back %d of %d batches from %s; sampled %d", restored, len(batches), store, len(todo))
    return out


def _verified(seqs: Sequences, prompts, rows, n: int, verifier) -> list[Sample]:
    """This process's samples with their verification scores (rows[p] holds prompt p's dataset columns)."""
    owners = [i // n for i in seqs.indices]
    scores = (verifier.score([prompts[p] for p in owners], seqs.texts, [rows[p] for p in owners])
              if verifier is not None else [None] * len(owners))
    me = processes.process_index()
    return [Sample(p, i % n, text, prefill_text(prompts[p]) + text, tokens, score, me)
            for p, i, text, tokens, score in zip(owners, seqs.indices, seqs.texts, seqs.num_tokens, scores)]


def sample(engine: Engine, prompts: list, gen_cfg, n: int, seed: int, rows=None, verifier=None,
           store: Path | None = None) -> Sampled:
    """`n` samples of every prompt (conversations), verified against `rows` (one dict of dataset columns per prompt)
    when a `verifier` is given; split across processes and gathered on all of them. With a `store` directory, batches
    already sampled there are read back and new ones written there as they finish (the module docstring: Resume)."""
    params = Params.of(gen_cfg)
    texts = [render(engine.tok, p) for p in prompts for _ in range(n)]
    plan = plan_batches(len(prompts), n, params.batch_size)
    with processes.split(plan) as mine:
        seqs = (_run(engine, texts, mine, params, seed) if store is None
                else _stored_run(engine, texts, mine, params, seed, Path(store)))
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
            "answer": row.get("answer"), "method": method, "source_model": source_model, "score": round(score, 4)}
