"""Batched sampling with transformers' `model.generate` (rollout engines `hf` and `static`).

Sampling works on a plan: every prompt is rendered with the chat template (continuing an assistant prefill when the
conversation ends with one) and repeated n times into one global list of sequences (prompt p's j-th sample is
sequence p * n + j), which `plan_batches` cuts into fixed batches. Each batch is sampled with its own seed, derived
from (seed, batch index), so a batch yields the same completions whichever process samples it and whatever else that
process samples: r1pipeline/sampling.py hands whole batches to processes and gathers them. `generate` is the
one-process form (all batches, results per prompt).

With the `static` engine prompts are padded up to a multiple of `rollout.prompt_bucket` and the last batch is filled
up to the batch size, so that a compiled decode step (GPU) meets the same few shapes throughout. Throughput is
reported beside the memory-bandwidth bound (r1pipeline/rollout.py).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch

from r1pipeline.rollout import bound_seconds, static_generate_kwargs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Params:
    """How to sample: a stage's `generation:` block."""
    max_new_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 1.0
    batch_size: int = 16

    @classmethod
    def of(cls, gen_cfg) -> Params:
        return cls(gen_cfg.max_new_tokens, gen_cfg.temperature, gen_cfg.top_p, gen_cfg.batch_size)


@dataclass
class Sequences:
    """Completions of some batches of a plan, as one process sampled them."""
    indices: list[int]         # global sequence indices (prompt = i // n, sample = i % n)
    texts: list[str]
    num_tokens: list[int]      # new tokens, up to and including the first end-of-turn token
    wall_s: float
    bound_s: float             # the shortest time the device could have taken (0 when unknown)
    engine: str
    batches: int
    restored: int = 0          # of `batches`, how many were read back from a batch store (sampling.py), not sampled

    def counts(self) -> dict:
        return {"batches": self.batches, "restored_batches": self.restored, "sequences": len(self.indices),
                "new_tokens": sum(self.num_tokens), "wall_s": round(self.wall_s, 2), "bound_s": self.bound_s,
                "engine": self.engine}


@dataclass
class Generations:
    """All completions of a prompt list, per prompt: `texts[p][j]`, `num_tokens[p][j]`, and throughput `stats`."""
    texts: list[list[str]]
    num_tokens: list[list[int]]
    stats: dict


def render(tok, messages) -> str:
    """Chat-template text of one prompt; a trailing assistant turn is a prefill that the model continues."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    if messages[-1]["role"] == "assistant":
        return tok.apply_chat_template(messages, tokenize=False, continue_final_message=True)
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def plan_batches(num_prompts: int, n: int, batch_size: int) -> list[tuple[int, list[int]]]:
    """(batch index, global sequence indices) for every batch, in order; the last batch may be shorter."""
    total = num_prompts * n
    return [(b, list(range(start, min(start + batch_size, total))))
            for b, start in enumerate(range(0, total, batch_size))]


def batch_seed(seed: int, index: int) -> int:
    """An independent seed for batch (or sequence) `index` of a run seeded with `seed` (numpy's SeedSequence)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def _stop_ids(model, tok) -> set[int]:
    ids = model.generation_config.eos_token_id
    ids = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    return ids | {tok.eos_token_id}


def _lengths(new_ids: torch.Tensor, stop: set[int]) -> list[int]:
    """Tokens generated per row ([B, T] new ids): up to and including the first stop token, else all of T."""
    is_stop = torch.isin(new_ids, torch.tensor(sorted(stop), device=new_ids.device))  # [B, T]
    first = is_stop.int().argmax(1) + 1  # [B]; argmax is 0 when a row has no stop token
    return torch.where(is_stop.any(1), first, new_ids.shape[1]).tolist()


@torch.inference_mode()
def run_batches(model, tok, texts: list[str], batches, params: Params, seed: int, device, rollout=None) -> Sequences:
    """Sample `batches` ((index, sequence indices) from `plan_batches`) of the rendered `texts` on `device`, where
    the caller has put the model."""
    tok.padding_side = "left"
    stop = _stop_ids(model, tok)
    sampling = ({"do_sample": True, "temperature": params.temperature, "top_p": params.top_p}
                if params.temperature > 0 else {"do_sample": False})
    engine = rollout.engine if rollout is not None else "hf"
    static = engine == "static"
    extra = static_generate_kwargs(rollout) if static else {}
    model.eval()
    out = Sequences([], [], [], 0.0, 0.0, engine, len(batches))
    t0 = time.perf_counter()
    for b, indices in batches:
        torch.manual_seed(batch_seed(seed, b))
        chunk = [texts[i] for i in indices]
        if static:  # one batch shape throughout: fill the last batch with copies, dropped below
            chunk += chunk[:1] * (params.batch_size - len(indices))
        enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=False,
                  pad_to_multiple_of=rollout.prompt_bucket if static else None).to(device)
        ids = model.generate(**enc, max_new_tokens=params.max_new_tokens, pad_token_id=tok.pad_token_id,
                             **sampling, **extra)
        new = ids[:len(indices), enc["input_ids"].shape[1]:]  # [B, T_new]
        out.indices.extend(indices)
        out.num_tokens.extend(_lengths(new, stop))
        out.texts.extend(tok.batch_decode(new, skip_special_tokens=True))
        out.bound_s += bound_seconds(model, len(chunk), enc["input_ids"].shape[1], new.shape[1])
    out.wall_s = time.perf_counter() - t0
    return out


def throughput(counts: list[dict], batch_size: int) -> dict:
    """Generation statistics of processes that sampled side by side (`Sequences.counts()` of each): tokens/s over the
    slowest one's wall time, beside the bandwidth bound over the slowest one's bound time."""
    tokens = sum(c["new_tokens"] for c in counts)
    wall = max((c["wall_s"] for c in counts), default=0.0)
    bound_s = max((c["bound_s"] for c in counts), default=0.0)
    rate = tokens / wall if wall else 0.0
    bound = tokens / bound_s if bound_s else 0.0
    return {"sequences": sum(c["sequences"] for c in counts), "new_tokens": tokens, "wall_s": round(wall, 2),
            "tokens_per_s": round(rate, 1), "bound_tokens_per_s": round(bound, 1),
            "share_of_bound": round(rate / bound, 5) if bound else 0.0, "batch_size": batch_size,
            "engine": counts[0]["engine"] if counts else "hf"}


def generate(model, tok, prompts, n: int = 1, params: Params = Params(), seed: int = 0, device="cpu",
             rollout=None) -> Generations:
    """Sample `n` completions for each prompt (a list of messages or a string), all in this process."""
    texts = [render(tok, p) for p in prompts for _ in range(n)]
    seqs = run_batches(model, tok, texts, plan_batches(len(prompts), n, params.batch_size), params, seed, device,
                       rollout)
    stats = throughput([seqs.counts()], params.batch_size)
    log.info("generated %d sequences (%d tokens) in %.1f s: %.1f tokens/s (memory-bandwidth bound %.0f tokens/s)",
             stats["sequences"], stats["new_tokens"], stats["wall_s"], stats["tokens_per_s"],
             stats["bound_tokens_per_s"])
    return Generations([seqs.texts[p * n:(p + 1) * n] for p in range(len(prompts))],
                       [seqs.num_tokens[p * n:(p + 1) * n] for p in range(len(prompts))], stats)
