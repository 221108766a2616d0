"""Batched sampling for the stages that generate: cold start, rejection sampling, eval and infer.

`generate(model, tok, prompts, n=k, ...)` renders each conversation with the chat template (continuing an assistant
prefill when the conversation ends with one), repeats it k times, and samples in left-padded batches with
`model.generate`. It returns, per prompt, the k completion texts and their token counts, plus throughput beside the
memory-bandwidth bound (r1pipeline/rollout.py). The `rollout` config group picks the engine: with `static`, prompts
are padded up to a multiple of `prompt_bucket` and the last batch is filled up to the batch size, so that a compiled
decode step (GPU) meets the same few shapes throughout.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import torch

from r1pipeline.rollout import bound_seconds, generation_engine, static_generate_kwargs

log = logging.getLogger(__name__)


@dataclass
class Generations:
    texts: list[list[str]]          # [num_prompts][k]
    num_tokens: list[list[int]]     # [num_prompts][k] new tokens, up to and including the first end-of-turn token
    wall_s: float = 0.0
    stats: dict = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        return sum(map(sum, self.num_tokens)) / self.wall_s if self.wall_s else 0.0


def render(tok, messages) -> str:
    """Chat-template text of one prompt; a trailing assistant turn is a prefill that the model continues."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    if messages[-1]["role"] == "assistant":
        return tok.apply_chat_template(messages, tokenize=False, continue_final_message=True)
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


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
def generate(model, tok, prompts, n: int = 1, max_new_tokens: int = 128, temperature: float = 1.0,
             top_p: float = 1.0, batch_size: int = 16, seed: int = 0, rollout=None) -> Generations:
    """Sample `n` completions for each prompt (a list of messages or a string) in left-padded batches."""
    texts = [render(tok, p) for p in prompts for _ in range(n)]
    tok.padding_side = "left"
    stop = _stop_ids(model, tok)
    sampling = ({"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0
                else {"do_sample": False})
    engine = generation_engine(rollout) if rollout is not None else "hf"
    static = engine == "static"
    extra = static_generate_kwargs(rollout) if static else {}
    model.eval()
    torch.manual_seed(seed)
    out_texts, out_lens, bound_s, t0 = [], [], 0.0, time.perf_counter()
    for start in range(0, len(texts), batch_size):
        chunk = texts[start:start + batch_size]
        real = len(chunk)
        if static:  # one batch shape throughout: fill the last batch with copies, dropped below
            chunk += chunk[:1] * (batch_size - real)
        enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=False,
                  pad_to_multiple_of=rollout.prompt_bucket if static else None).to(model.device)
        ids = model.generate(**enc, max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id, **sampling, **extra)
        new = ids[:real, enc["input_ids"].shape[1]:]  # [B, T_new]
        lens = _lengths(new, stop)
        out_lens.extend(lens)
        out_texts.extend(tok.batch_decode(new, skip_special_tokens=True))
        bound_s += bound_seconds(model, len(chunk), enc["input_ids"].shape[1], new.shape[1])
    wall = time.perf_counter() - t0
    gens = Generations([out_texts[i * n:(i + 1) * n] for i in range(len(prompts))],
                       [out_lens[i * n:(i + 1) * n] for i in range(len(prompts))], wall)
    bound = sum(out_lens) / bound_s if bound_s else 0.0
    gens.stats = {"sequences": len(texts), "new_tokens": sum(out_lens), "wall_s": round(wall, 2),
                  "tokens_per_s": round(gens.tokens_per_s, 1), "bound_tokens_per_s": round(bound, 1),
                  "share_of_bound": round(gens.tokens_per_s / bound, 5) if bound else 0.0,
                  "batch_size": batch_size, "engine": engine}
    log.info("generated %d sequences (%d tokens) in %.1f s: %.1f tokens/s (memory-bandwidth bound %.0f tokens/s, "
             "%.2f%% of it)", len(texts), sum(out_lens), wall, gens.tokens_per_s, bound,
             100 * gens.stats["share_of_bound"])
    return gens


def generate_with(model, tok, prompts, gen_cfg, n: int, seed: int, rollout=None) -> Generations:
    """`generate` with the sampling parameters of a `generation:` config block and the `rollout` group's engine."""
    return generate(model, tok, prompts, n=n, max_new_tokens=gen_cfg.max_new_tokens, temperature=gen_cfg.temperature,
                    top_p=gen_cfg.top_p, batch_size=gen_cfg.batch_size, seed=seed, rollout=rollout)
