"""vLLM's offline engine for the generating stages (`rollout=vllm`; GRPO uses TRL's colocate mode instead).

Every process of a stage holds one engine with the whole model on its own GPU (tensor_parallel_size=1) and samples its
own batches, as TRL's colocate mode does for GRPO: vLLM joins the process group that accelerate set up
(`distributed_executor_backend="external_launcher"`) instead of starting workers of its own. Prompts go in as token
ids (rendered and tokenized as for `model.generate`, no extra special tokens), and every sequence carries its own
seed derived from (seed, sequence index), so a sample does not depend on the process or batch that drew it.

Needs `pip install 'r1pipeline[vllm]'` and a CUDA GPU (config.check_rollout refuses it otherwise, before anything
loads). Not run on a GPU yet: tests/test_processes.py checks the calls against a stand-in `vllm` module.
"""
from __future__ import annotations

import os
import time

from r1pipeline import processes
from r1pipeline.generation import Params, Sequences, batch_seed

# vLLM's memory profiler is misled by its default batch-token budget (TRL sets the same value in colocate mode).
MAX_NUM_BATCHED_TOKENS = 4096


def load(path: str, model_cfg, rollout):
    """A vllm.LLM for the checkpoint at `path` on this process's GPU."""
    from trl.trainer.utils import ensure_master_addr_port
    from vllm import LLM

    state = processes.state()
    # external_launcher reads the layout from the environment; a single in-process run has none set.
    os.environ.update(RANK=str(state.process_index), LOCAL_RANK=str(state.local_process_index),
                      WORLD_SIZE=str(state.num_processes))
    ensure_master_addr_port()
    return LLM(model=path, tokenizer=path, dtype=model_cfg.dtype, tensor_parallel_size=1,
               gpu_memory_utilization=rollout.gpu_memory_utilization,
               distributed_executor_backend="external_launcher", seed=state.process_index,
               max_num_batched_tokens=MAX_NUM_BATCHED_TOKENS)


def run_batches(llm, tok, texts: list[str], batches, params: Params, seed: int) -> Sequences:
    """Sample `batches` ((index, sequence indices) from generation.plan_batches) of the rendered `texts`."""
    from vllm import SamplingParams

    indices = [i for _, batch in batches for i in batch]
    if not indices:  # a process with no share of the batches
        return Sequences([], [], [], 0.0, 0.0, "vllm", 0)
    prompts = [{"prompt_token_ids": tok(texts[i], add_special_tokens=False)["input_ids"]} for i in indices]
    sampling = [SamplingParams(n=1, max_tokens=params.max_new_tokens, temperature=params.temperature,
                               top_p=params.top_p if params.temperature > 0 else 1.0, seed=batch_seed(seed, i))
                for i in indices]
    t0 = time.perf_counter()
    outputs = llm.generate(prompts, sampling, use_tqdm=False)
    wall = time.perf_counter() - t0
    # vLLM schedules the whole list itself, so no bandwidth bound is computed here (bound_s 0 = not known).
    return Sequences(indices, [o.outputs[0].text for o in outputs], [len(o.outputs[0].token_ids) for o in outputs],
                     wall, 0.0, "vllm", len(batches))
