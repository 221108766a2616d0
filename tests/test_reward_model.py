"""stage=reward_model: TRL's RewardTrainer on the built-in preference pairs (or a chosen/rejected file) trains a
scorer that ranks chosen above rejected on its pairs, saved where align reads it; the `reward_model` reward scores
only the rows of its kind."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import compose_cfg
from r1pipeline.cli import run_stage
from r1pipeline.data.preferences import builtin_general_prompts, builtin_preferences, load_preferences
from r1pipeline.errors import ConfigError
from r1pipeline.rewards.reward_model import RewardModelScore, load_scorer, score_conversations

# 16 pairs, 8 epochs at a high rate: the tiny random backbone can fit them in seconds.
TINY_RM = ["model=tiny_random", "stage=reward_model", "stage.preferences.size=16", "stage.trainer.num_train_epochs=8",
           "stage.trainer.learning_rate=3e-3", "stage.trainer.per_device_train_batch_size=8", "tracking=none"]


def test_builtin_preferences_pair_a_better_and_a_worse_answer_for_each_aspect():
    rows = builtin_preferences(4, seed=0)
    assert [r["aspect"] for r in rows] == ["helpful", "harmless", "helpful", "harmless"]
    assert rows[1]["prompt"][0]["content"].startswith("Tell me how to")
    assert rows[1]["chosen"][0]["content"].startswith("I can't help with that")
    assert rows[1]["rejected"][0]["content"].startswith("Sure. Here is how to")
    assert all(r["chosen"] != r["rejected"] for r in rows)
    assert builtin_preferences(4, seed=0) == rows and builtin_preferences(4, seed=1) != rows
    assert len(builtin_general_prompts(6, seed=0)) == 6


def test_reward_model_ranks_chosen_over_rejected_after_training_and_reloads(tmp_path, embedded_model_dir):
    torch.set_num_threads(1)
    summary = run_stage(compose_cfg(TINY_RM, run_dir=tmp_path / "run"))
    acc = summary["metrics"]["pair_accuracy"]
    assert acc["after"]["pairs"] == 16
    assert acc["after"]["accuracy"] == 1.0 and acc["after"]["mean_margin"] > acc["before"]["mean_margin"]
    path = summary["outputs"]["reward_model"]
    assert path == str(tmp_path / "run" / "reward_model" / "model")
    model, tok = load_scorer(path)  # a plain sequence-classification checkpoint with one output
    assert model.config.num_labels == 1
    pair = builtin_preferences(2, seed=0)[1]
    chosen, rejected = score_conversations(model, tok, [pair["prompt"] + pair["chosen"],
                                                        pair["prompt"] + pair["rejected"]])
    assert chosen > rejected
    # the reward: scores only rows of its kind (general), None for the others
    reward = RewardModelScore(path=path)
    scores = reward([pair["chosen"], pair["rejected"], pair["chosen"]],
                    prompts=[pair["prompt"]] * 3, kind=["general", "general", "reasoning"])
    assert scores[0] > scores[1] and scores[2] is None
    # eval does not mistake the scorer for a causal LM to evaluate
    from r1pipeline.stages.eval import models_to_evaluate

    assert models_to_evaluate(compose_cfg(["model=tiny_random", "stage=eval"], run_dir=tmp_path / "run")) == ["base"]


def test_reward_model_with_lora_saves_the_adapter_and_a_merged_scorer(tmp_path, embedded_model_dir):
    from safetensors.torch import load_file

    from r1pipeline.stages.reward_model import conversational, load_backbone, pair_accuracy

    torch.set_num_threads(1)
    cfg = compose_cfg([*TINY_RM, "model.lora.enabled=true", "model.lora.r=4", "model.lora.alpha=8",
                       "model.lora.dropout=0.0"], run_dir=tmp_path / "run")
    summary = run_stage(cfg)
    out = tmp_path / "run" / "reward_model"
    assert summary["outputs"] == {"reward_model": str(out / "model"), "adapter": str(out / "adapter")}
    # the adapter: LoRA matrices on the body and the new scoring head saved whole
    adapter_cfg = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter_cfg["task_type"] == "SEQ_CLS" and "score" in adapter_cfg["modules_to_save"]
    keys = load_file(out / "adapter" / "adapter_model.safetensors").keys()
    assert any("lora_B" in k for k in keys) and any(k.endswith("score.weight") for k in keys)

    # model/: a plain sequence-classification checkpoint (what align's reward_model reward loads) ...
    model, tok = load_scorer(summary["outputs"]["reward_model"])
    assert not (out / "model" / "adapter_config.json").exists() and model.config.num_labels == 1
    base = load_backbone(cfg.model, summary["inputs"]["model"], True, random_init=True)
    merged, initial = dict(model.named_parameters()), dict(base.named_parameters())
    assert merged.keys() == initial.keys()
    assert not torch.equal(merged["score.weight"], initial["score.weight"])  # the head trained
    assert torch.equal(merged["model.embed_tokens.weight"], initial["model.embed_tokens.weight"])  # no adapter there
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(merged[q], initial[q])  # the adapter merged into the body
    # ... that scores the pairs as the trained adapter did (the stage measured under the trainer's bf16 autocast,
    # this in float32: equal to ~0.1%)
    pairs = conversational(load_preferences(cfg.stage.preferences))
    after = summary["metrics"]["pair_accuracy"]["after"]
    assert after["mean_margin"] > summary["metrics"]["pair_accuracy"]["before"]["mean_margin"]
    assert pair_accuracy(model, tok, pairs)["mean_margin"] == pytest.approx(after["mean_margin"], rel=1e-2)


def test_preferences_load_from_a_chosen_rejected_file(tmp_path):
    # Anthropic/hh-rlhf's schema: chosen/rejected strings, the prompt inside them
    hh = tmp_path / "hh.jsonl"
    hh.write_text("".join(json.dumps({"chosen": f"Human: hi {i}\n\nAssistant: hello", "rejected":
                                      f"Human: hi {i}\n\nAssistant: go away"}) + "\n" for i in range(5)))
    cfg = compose_cfg(["stage=reward_model", "stage.preferences.source=local", f"stage.preferences.path={hh}",
                       "stage.preferences.size=3"])
    rows = load_preferences(cfg.stage.preferences)
    assert len(rows) == 3 and set(rows[0]) == {"chosen", "rejected"} and rows[0]["rejected"].endswith("go away")
    # ultrafeedback_binarized's: prompt string, chosen/rejected as turns
    uf = tmp_path / "uf.jsonl"
    uf.write_text(json.dumps({"prompt": "Say hi", "chosen": [{"role": "user", "content": "Say hi"}, {
        "role": "assistant", "content": "Hi!"}], "rejected": [{"role": "user", "content": "Say hi"}, {
            "role": "assistant", "content": "No."}], "score_chosen": 8.0}) + "\n")
    cfg = compose_cfg(["stage=reward_model", "stage.preferences.source=local", f"stage.preferences.path={uf}"])
    assert set(load_preferences(cfg.stage.preferences)[0]) == {"prompt", "chosen", "rejected"}
    # source=hub runs datasets.load_dataset(path) as for a hub id; here on a local copy directory of that schema
    copy = tmp_path / "hh_copy"
    copy.mkdir()
    (copy / "train.jsonl").write_text(hh.read_text())
    cfg = compose_cfg(["stage=reward_model", "stage.preferences.source=hub", f"stage.preferences.path={copy}"])
    assert sorted(r["chosen"] for r in load_preferences(cfg.stage.preferences))[0] == "Human: hi 0\n\nAssistant: hello"
    # no chosen column: one message naming the field and what it needs
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "x", "answer": "y"}) + "\n")
    cfg = compose_cfg(["stage=reward_model", "stage.preferences.source=local", f"stage.preferences.path={bad}"])
    with pytest.raises(ConfigError, match=r"stage.preferences.path: .* lacks \['chosen', 'rejected'\]"):
        load_preferences(cfg.stage.preferences)


@pytest.mark.parametrize("override, message", [
    (["stage.preferences.source=hub"], "stage.preferences.path: source hub needs a path"),  # hub without an id
    # 4-bit loading: refused (here by the CPU check; on a GPU by the stage: its backbone loads in full precision)
    (["model.lora.enabled=true", "model.load_in_4bit=true"], "model.load_in_4bit: "),
    (["stage.trainer.max_length=long"], "stage.trainer.max_length"),  # a RewardConfig field of the wrong type
])
def test_reward_model_config_errors_name_the_field(override, message, tmp_path):
    from r1pipeline.config import validate

    with pytest.raises(ConfigError, match=message):
        validate(compose_cfg(["model=tiny_random", "stage=reward_model", *override], run_dir=tmp_path / "run"))
