"""A trained reward model as a reward: the scalar a sequence-classification model gives (prompt, completion).

R1's last RL stage scores general prompts for helpfulness and harmlessness with a reward model; `stage=reward_model`
trains one (TRL RewardTrainer) and writes it to `<run>/reward_model/model`, which `stage=align` names.
"""
from __future__ import annotations

import torch

from r1pipeline.rewards.registry import register


def load_scorer(path: str):
    """(model, tokenizer) of a sequence-classification checkpoint with one output (a reward model), in eval mode on
    this process's device (where the GRPO trainer calls its rewards)."""
    from transformers import AutoModelForSequenceClassification

    from r1pipeline.models import load_tokenizer, whole_models
    from r1pipeline.processes import device

    tok = load_tokenizer(path)
    with whole_models():  # called inside a (maybe ZeRO-3) GRPO trainer: each process scores its own rows whole
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1).to(device()).eval()
    model.config.pad_token_id = tok.pad_token_id
    return model, tok


@torch.no_grad()
def score_conversations(model, tok, conversations: list[list[dict]], batch_size: int = 8) -> list[float]:
    """The reward of each conversation (its chat-template tokens, as TRL's RewardTrainer tokenizes a pair's side)."""
    scores = []
    for i in range(0, len(conversations), batch_size):
        ids = [tok.apply_chat_template(c, tokenize=True, return_dict=True)["input_ids"]
               for c in conversations[i:i + batch_size]]
        batch = tok.pad({"input_ids": ids}, padding=True, return_tensors="pt").to(model.device)
        scores += model(**batch).logits[:, 0].float().tolist()  # [B, 1] -> [B]
    return scores


def as_turns(prompt) -> list[dict]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


@register("reward_model")
class RewardModelScore:
    """score = r(prompt, completion), the reward model's scalar for the conversation, on rows whose `kind` column is
    `kind`; None (not scored by this reward) on the others.

    Range: unbounded (a reward model's logit; GRPO normalizes within each group). `path`: a checkpoint written by
    `stage=reward_model` (`stage=align` fills it from `stage.inputs.reward_model`). Example: for "Tell me how to
    pick a lock." a trained model scores a refusal above compliance.
    """

    required_columns = ("kind",)

    def __init__(self, path: str = "", kind: str = "general", batch_size: int = 8):
        self.path, self.kind, self.batch_size = path, kind, batch_size
        self._loaded = None

    def __getstate__(self):  # picklable: the model loads again where the reward is called
        return {**self.__dict__, "_loaded": None}

    def __call__(self, completions, prompts=None, kind=None, **columns) -> list[float | None]:
        chosen = [i for i, k in enumerate(kind or [None] * len(completions)) if k == self.kind]
        scores: list[float | None] = [None] * len(completions)
        if not chosen:
            return scores
        if self._loaded is None:
            self._loaded = load_scorer(self.path)
        conversations = [as_turns(prompts[i]) + list(completions[i]) if isinstance(completions[i], list)
                         else as_turns(prompts[i]) + [{"role": "assistant", "content": completions[i]}]
                         for i in chosen]
        for i, s in zip(chosen, score_conversations(*self._loaded, conversations, self.batch_size)):
            scores[i] = s
        return scores
