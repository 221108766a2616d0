"""The pieces the later stages are built from (filters, readable rewrite, batched generation), and each stage alone on
the tiny random model: cold start from a local Bespoke-Stratos copy, SFT1 with its loss mask, rejection sampling with
its drop counts, eval on two benchmarks (pass@1/maj@k math: tests/test_evaluation.py), infer, and the hand-off
errors."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import compose_cfg
from hub_copies import write_stratos_copy
from r1pipeline.rejection_filter import RejectionFilter, longest_paragraph
from r1pipeline.errors import ConfigError
from r1pipeline.rewards import register
from r1pipeline.cli import run_stage
from r1pipeline.stages.cold_start import clean_reasoning, refine

TEMPLATE = "<think>\n{reasoning}\n\nSo the final answer is {answer}.\n</think>\n<answer>{answer}</answer>"
FILTERS = OmegaConf.create({"min_score": 1.0, "mixed_language": True, "min_language_share": 0.95, "code_blocks": True,
                            "max_paragraph_chars": 200, "dedupe": True})
GOOD = "<think>\n3 + 5 = 8, and 8 * 2 = 16.\n</think>\n<answer>(3 + 5) * 2</answer>"


@pytest.fixture(autouse=True)
def one_thread():
    # Two cores shared by several jobs: one thread per process is several times faster than oversubscribing.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@register("test_always")
class AlwaysCorrect:
    """Test-only verifier: every sample is correct, so a random model's outputs reach the filters."""

    def __call__(self, completions, **kwargs):
        return [1.0] * len(completions)


def _rows(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------- pure pieces

def test_rejection_filters_drop_crafted_samples_and_count_why():
    keep = RejectionFilter(FILTERS)
    samples = [
        ("p1", GOOD, 1.0, True),                                               # correct, clean: kept
        ("p1", GOOD.replace("(3 + 5) * 2", "3 * 5 + 2"), 0.0, False),          # wrong answer
        ("p2", "<think>\nFirst add 3 and 5. 然后乘以二 得到十六。\n</think><answer>16</answer>", 1.0, False),  # mixed language
        ("p3", "<think>\n```python\nprint(3 + 5)\n```\n</think><answer>8</answer>", 1.0, False),     # code block
        ("p4", "<think>\n" + "add the numbers " * 20 + "\n</think><answer>8</answer>", 1.0, False),  # 320-char paragraph
        ("p1", GOOD.replace("\n", "\n "), 1.0, False),                         # duplicate of the first (whitespace)
        ("p2", GOOD, 1.0, True),                                               # the same text for another prompt: kept
    ]
    assert [keep(p, text, score) for p, text, score, _ in samples] == [s[-1] for s in samples]
    assert keep.stats() == {"samples": 7, "kept": 2, "kept_share": round(2 / 7, 4),
                            "dropped": {"wrong": 1, "mixed_language": 1, "code_block": 1, "long_paragraph": 1,
                                        "duplicate": 1}}


def test_refine_rewrites_into_the_readable_template():
    raw = "Let me solve this step by step.\n<think> 3+5=8\n3+5=8\n\n\n\n8*2=16 </think>\n<answer> (3+5)*2 </answer>"
    assert refine(raw, TEMPLATE) == ("<think>\n3+5=8\n\n8*2=16\n\nSo the final answer is (3+5)*2.\n</think>\n"
                                      "<answer>(3+5)*2</answer>")
    # an unclosed think without an answer block: the last line is the answer, without its "the answer is"
    assert refine("<think>try 3*5+1\nSo the answer is 16.", TEMPLATE) == (
        "<think>\ntry 3*5+1\n\nSo the final answer is 16.\n</think>\n<answer>16</answer>")
    assert refine("<think>The answer is 40.", TEMPLATE) == (
        "<think>\nThe answer is 40.\n\nSo the final answer is 40.\n</think>\n<answer>40</answer>")
    assert refine("<think></think><answer>4</answer>", TEMPLATE) is None  # nothing to learn from
    # the answer a format-free check verified is the one stated; a last line that only states it leaves
    assert refine("<think> 2 + 5 = 7, 7 - 3 = 4.\nThe final answer is 4.", TEMPLATE, "4") == (
        "<think>\n2 + 5 = 7, 7 - 3 = 4.\n\nSo the final answer is 4.\n</think>\n<answer>4</answer>")
    assert refine("<think> 2 + 5 = 7, 7 - 3 = 4.", TEMPLATE, "4") == (
        "<think>\n2 + 5 = 7, 7 - 3 = 4.\n\nSo the final answer is 4.\n</think>\n<answer>4</answer>")
    assert clean_reasoning("a\n\n\n\nb  \nb") == "a\n\nb"
    assert longest_paragraph("ab\n\nabcd\n \nabc") == 4


@pytest.mark.parametrize("verify,completion,answer", [
    # format-free: no answer block, the last number of the response is what the check verified
    ([{"reasoning_gym": {"answer_from": "anywhere"}}], " 2 + 5 = 7, 7 - 3 = 4. The final answer is 4.", "4"),
    # the default reads the answer block; none -> None
    (["reasoning_gym"], " 2 + 5 = 7 </think> <answer> 7 </answer>", "7"),
    (["reasoning_gym"], " 2 + 5 = 7", None),
    # Countdown reads expressions
    ([{"countdown": {"answer_from": "anywhere"}}], " so (3 + 5) * 2 = 16.", "(3 + 5) * 2 = 16"),
])
def test_verifier_says_which_answer_it_checked(verify, completion, answer):
    from r1pipeline.verify import Verifier

    prompt = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>"}]
    assert Verifier(verify).answers([prompt], [completion]) == [answer]


def test_batched_generation_returns_k_samples_per_prompt(embedded_model_dir):
    from r1pipeline.generation import Params, generate
    from r1pipeline.models import load_model, load_tokenizer

    cfg = compose_cfg(["model=tiny_random"])
    tok, model = load_tokenizer(str(embedded_model_dir)), load_model(cfg.model, str(embedded_model_dir), True, True)
    prompts = [[{"role": "user", "content": "hi"}],
               [{"role": "user", "content": "a much longer question here"}, {"role": "assistant", "content": "<think>"}]]
    gens = generate(model, tok, prompts, n=3, params=Params(max_new_tokens=5, batch_size=4))
    assert [len(t) for t in gens.texts] == [3, 3] and all(1 <= n <= 5 for row in gens.num_tokens for n in row)
    assert gens.stats["sequences"] == 6 and gens.stats["tokens_per_s"] > 0 and tok.padding_side == "left"
    # token counts stop at (and include) the first end-of-turn token; rows without one count every token
    from r1pipeline.generation import _lengths

    assert _lengths(torch.tensor([[5, 2, 2], [5, 6, 7], [2, 0, 0]]), {2}) == [2, 3, 1]


# ---------------------------------------------------------------- stages alone

def _cold_start_from_file(tmp_path, run_dir):
    cfg = compose_cfg(["model=tiny_random", "stage=cold_start", "stage.methods=[load]", "stage.load.source=local",
                       f"stage.load.path={write_stratos_copy(tmp_path / 'stratos.jsonl')}"], run_dir=run_dir)
    return run_stage(cfg)


def test_cold_start_loads_a_bespoke_stratos_copy(tmp_path):
    summary = _cold_start_from_file(tmp_path, tmp_path / "run")
    rows = _rows(summary["outputs"]["dataset"])
    assert rows[0]["messages"] == [
        {"role": "system", "content": "Think first."}, {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "<think>\n2 plus 2 is 4.\n</think>\n<answer>\\boxed{4}</answer>"}]
    assert rows[0]["method"] == "load" and summary["metrics"]["per_method"]["load"] == {"loaded": 2, "kept": 2}


def test_cold_start_samples_verifies_and_rewrites(tmp_path, embedded_model_dir):
    cfg = compose_cfg(["model=tiny_random", "dataset=countdown", "stage=cold_start", "stage.methods=[few_shot,direct]",
                       "stage.verify=[test_always]", "stage.num_prompts=2", "stage.samples_per_prompt=2",
                       "stage.generation.max_new_tokens=8", "dataset.train_size=8", "dataset.test_size=4"],
                      run_dir=tmp_path / "run")
    summary = run_stage(cfg)
    rows = _rows(summary["outputs"]["dataset"])
    stats = summary["metrics"]["per_method"]
    assert set(stats) == {"few_shot", "direct"} and all(s["samples"] == 4 and s["verified"] == 4 for s in stats.values())
    assert len(rows) == sum(s["kept"] for s in stats.values()) >= 1
    row = rows[0]
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
    assert "Using the numbers" in row["messages"][1]["content"] and "Reason step by step" not in row["messages"][1]["content"]
    assert row["messages"][2]["content"].startswith("<think>\n") and row["messages"][2]["content"].endswith("</answer>")
    assert row["source_model"] == "base" and row["score"] == 1.0
    assert stats["direct"]["generation"]["tokens_per_s"] > 0


def test_sft1_trains_on_the_assistant_turn_only(tmp_path, embedded_model_dir):
    run_dir = tmp_path / "run"
    _cold_start_from_file(tmp_path, run_dir)
    cfg = compose_cfg(["model=tiny_random", "stage=sft1", "stage.trainer.max_steps=2",
                       "stage.trainer.per_device_train_batch_size=2", "stage.trainer.learning_rate=1e-2"], run_dir=run_dir)
    summary = run_stage(cfg)
    out = run_dir / "sft1"
    for name in ("manifest.json", "summary.json", "metrics.jsonl", "log.txt", "model/model.safetensors"):
        assert (out / name).is_file(), name
    assert summary["steps"] == 2 and summary["inputs"]["dataset"].endswith("cold_start/dataset.jsonl")
    assert set(summary["metrics"]) >= {"loss", "mean_token_accuracy"}
    assert summary["alerts"] == [] and summary["system"]["peak_rss_gb"] > 0  # SFT: system metrics, no RL alerts

    # The labels TRL builds from our rows: prompt tokens masked, the assistant turn (and its end token) trained.
    from trl import SFTTrainer

    from r1pipeline.models import load_model, load_tokenizer
    from r1pipeline.stages.sft import prompt_completion, sft_args

    tok = load_tokenizer(str(embedded_model_dir))
    trainer = SFTTrainer(model=load_model(cfg.model, str(embedded_model_dir), True, True), processing_class=tok,
                         args=sft_args(cfg, tmp_path / "probe"),
                         train_dataset=prompt_completion(run_dir / "cold_start" / "dataset.jsonl"))
    ex = trainer.train_dataset[0]
    trained = tok.decode([t for t, lab in zip(ex["input_ids"], ex["labels"]) if lab != -100])
    assert trained.startswith("<think>\n2 plus 2 is 4.") and trained.rstrip().endswith("<|im_end|>")
    assert "What is 2 + 2?" not in trained and "Think first." not in trained


def test_sft_builds_its_trainer_config_before_loading_the_model(tmp_path, monkeypatch, embedded_model_dir):
    """Under ZeRO-3 the trainer config registers DeepSpeed, which makes from_pretrained load the weights partitioned;
    built after the model, it would come too late (GRPO does the same, r1pipeline/stages/grpo.py)."""
    import r1pipeline.stages.sft as sft

    run_dir, order = tmp_path / "run", []
    _cold_start_from_file(tmp_path, run_dir)

    class Loaded(Exception):
        """Stops the stage once the model is loading: what came before is all this test needs."""

    def load_model(*args, **kwargs):
        order.append("model")
        raise Loaded

    monkeypatch.setattr(sft, "sft_args", lambda cfg, out: order.append("trainer config") or {})
    monkeypatch.setattr(sft, "load_model", load_model)
    with pytest.raises(Loaded):
        sft.run_sft(compose_cfg(["model=tiny_random", "stage=sft1"], run_dir=run_dir), tmp_path / "out",
                    run_dir / "cold_start" / "dataset.jsonl", str(embedded_model_dir), True)
    assert order == ["trainer config", "model"]


def test_sft_packs_conversations_when_asked(tmp_path, embedded_model_dir):
    run_dir = tmp_path / "run"
    _cold_start_from_file(tmp_path, run_dir)
    summary = run_stage(compose_cfg(["model=tiny_random", "stage=sft2", "stage.inputs.dataset=cold_start",
                                     "stage.trainer.packing=true", "stage.trainer.max_length=64",
                                     "stage.trainer.max_steps=1"], run_dir=run_dir))
    assert summary["steps"] == 1 and math.isfinite(summary["metrics"]["loss"]["last"])


def test_reasoning_rl_alone_uses_its_own_reward_mix(tmp_path, embedded_model_dir):
    cfg = compose_cfg(["model=tiny_random", "stage=reasoning_rl", "stage.inputs.model=base", "dataset.train_size=8",
                       "dataset.test_size=4", "stage.trainer.max_steps=1", "stage.trainer.per_device_train_batch_size=4",
                       "stage.trainer.num_generations=4", "stage.trainer.max_completion_length=8"],
                      run_dir=tmp_path / "run")
    summary = run_stage(cfg)
    assert summary["steps"] == 1 and set(summary["reward_errors"]) == set(cfg.stage.rewards) - {"audit"} != set(cfg.reward) - {"audit"}
    assert (tmp_path / "run" / "reasoning_rl" / "model" / "model.safetensors").is_file()


def test_rejection_sampling_counts_what_it_kept_and_dropped(tmp_path, embedded_model_dir):
    cfg = compose_cfg(["model=tiny_random", "stage=rejection_sampling", "stage.inputs.model=base",
                       "stage.verify=[test_always]", "stage.num_prompts=3", "stage.samples_per_prompt=2",
                       "stage.generation.max_new_tokens=8", "stage.filters.mixed_language=false",
                       "stage.non_reasoning.share=0.5", "dataset.train_size=8", "dataset.test_size=4"],
                      run_dir=tmp_path / "run")
    summary = run_stage(cfg)
    m = summary["metrics"]
    assert m["filter"]["samples"] == 6 and m["filter"]["kept"] + sum(m["filter"]["dropped"].values()) == 6
    assert set(m["filter"]["dropped"]) == {"wrong", "mixed_language", "code_block", "long_paragraph", "duplicate"}
    assert m["non_reasoning_rows"] == m["reasoning_rows"] >= 1  # share 0.5: as many as kept
    rows = _rows(summary["outputs"]["dataset"])
    assert {r["method"] for r in rows} == {"rejection_sampling", "non_reasoning"}
    assert all(r["messages"][-1]["role"] == "assistant" for r in rows)
    manifest = json.loads((tmp_path / "run" / "rejection_sampling" / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["metrics"]["filter"] == m["filter"]


def test_rejection_sampling_that_keeps_nothing_says_why_and_marks_the_stage_failed(tmp_path, embedded_model_dir):
    cfg = compose_cfg(["model=tiny_random", "stage=rejection_sampling", "stage.inputs.model=base",
                       "stage.verify=[test_always]", "stage.num_prompts=2", "stage.samples_per_prompt=2",
                       "stage.generation.max_new_tokens=4", "stage.filters.min_score=2.0",
                       "dataset.train_size=8", "dataset.test_size=4"], run_dir=tmp_path / "run")
    with pytest.raises(ConfigError, match=r"kept no sample .*loosen stage\.filters"):
        run_stage(cfg)
    manifest = json.loads((tmp_path / "run" / "rejection_sampling" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["metrics"]["filter"]["dropped"]["wrong"] == 4
    assert not (tmp_path / "run" / "rejection_sampling" / "summary.json").exists()


def test_eval_and_infer_on_the_base_model(tmp_path, embedded_model_dir):
    from r1pipeline.evaluation import score_columns
    from r1pipeline.stages.eval import COLUMNS

    run_dir = tmp_path / "run"
    cfg = compose_cfg(["model=tiny_random", "stage=eval", "stage.num_prompts=2", "stage.k=2",
                       "stage.datasets=[countdown,basic_arithmetic]", "stage.generation.max_new_tokens=6",
                       "dataset.train_size=8", "dataset.test_size=4"], run_dir=run_dir)
    summary = run_stage(cfg)
    # one row per model and benchmark, every score strict and format-free with its 95% interval
    assert list(summary["metrics"]) == ["base"]
    assert list(summary["metrics"]["base"]) == ["countdown", "basic_arithmetic"]
    for scores in summary["metrics"]["base"].values():
        assert set(scores) == {"prompts", "k", *score_columns(), "mean_length", "tokens_per_s", "bound_tokens_per_s"}
        assert (scores["prompts"], scores["k"]) == (2, 2)
        for key in (k for k in score_columns() if not k.endswith(("_lo", "_hi"))):
            assert 0 <= scores[f"{key}_lo"] <= scores[key] <= scores[f"{key}_hi"] <= 1, key
        # random weights never write the R1 format: strict greedy pass@1 is 0 of 2, and Wilson's bound says how little
        # that means
        assert (scores["greedy/strict"], scores["greedy/strict_hi"]) == (0.0, pytest.approx(0.6576, abs=1e-4))
    head = summary["table"].split("\n\n")[1].splitlines()[0]
    assert head.startswith("| model | countdown greedy pass@1 strict | countdown greedy pass@1 free | countdown pass@1 "
                           "(k=2) strict |") and "| basic_arithmetic maj@2 free |" in head
    assert summary["eval_score"] == 0.0 and "base greedy pass@1 on countdown" in summary["eval_score_of"]
    rows = list(csv.DictReader((run_dir / "eval" / "results.csv").open()))
    assert [(r["model"], r["dataset"]) for r in rows] == [("base", "countdown"), ("base", "basic_arithmetic")]
    assert list(rows[0]) == list(COLUMNS)
    samples = _rows(run_dir / "eval" / "samples.jsonl")
    # per benchmark, 2 prompts x (1 greedy + 2 sampled) answers, each verified both ways
    assert [(s["dataset"], s["pass"]) for s in samples] == [
        (d, p) for d in ("countdown", "basic_arithmetic") for p in ("greedy",) * 2 + ("sampled",) * 4]
    assert all(set(s["score"]) == set(s["given"]) == {"strict", "free"} for s in samples)
    for name in ("results.md", "stages.png", "manifest.json"):
        assert (run_dir / "eval" / name).is_file(), name
    assert list((run_dir / "eval" / "swanlog").glob("run-*")), "eval results did not reach the tracker"

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("What is 2 + 2?\nName a colour.\n")
    cfg = compose_cfg(["model=tiny_random", "stage=infer", f"stage.prompts_file={prompts}",
                       "stage.generation.max_new_tokens=4"], run_dir=run_dir)
    result = run_stage(cfg)
    answers = _rows(result["answers"])
    assert [a["messages"][0]["content"] for a in answers] == ["What is 2 + 2?", "Name a colour."]
    assert all(a["messages"][-1]["role"] == "assistant" for a in answers)


def test_interactive_chat_keeps_the_conversation(embedded_model_dir):
    import io

    from r1pipeline.sampling import open_engine
    from r1pipeline.stages.infer import chat

    cfg = compose_cfg(["model=tiny_random", "stage=infer", "stage.system=Be brief.", "stage.generation.max_new_tokens=3"])
    shown = io.StringIO()
    with open_engine(cfg, str(embedded_model_dir), True) as engine:
        messages = chat(engine, cfg, io.StringIO("hello\nand again\n\n"), shown)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant"]
    assert messages[3]["content"] == "and again" and shown.getvalue().count("model> ") == 2


# ---------------------------------------------------------------- hand-off errors

@pytest.mark.parametrize("overrides,message", [
    # SFT1 before any cold-start data exists
    (["stage=sft1"], r"stage\.inputs\.dataset: stage 'cold_start' has no complete output .*run stage cold_start first"),
    # reasoning RL before SFT1
    (["stage=reasoning_rl"], r"stage\.inputs\.model: stage 'sft1' .*run stage sft1 first"),
    # rejection sampling before reasoning RL
    (["stage=rejection_sampling"], r"stage\.inputs\.model: stage 'reasoning_rl' .*run stage reasoning_rl first"),
    # eval of a named stage that never ran
    (["stage=eval", "stage.inputs.models=[base,sft2]"], r"stage\.inputs\.models: stage 'sft2' .*run stage sft2 first"),
    # a name that is not a stage
    (["stage=sft2", "stage.inputs.model=sft3"], r"stage\.inputs\.model: 'sft3' is neither 'base' nor a stage that "
                                               r"produces a model \(r1_zero, sft1, reasoning_rl, sft2, align, distill\)"),
    # a stage without a model as a model source
    (["stage=infer", "stage.inputs.model=eval"], r"stage\.inputs\.model: 'eval' is neither 'base' nor a stage that produces"),
    # a dataset from a stage that produces none
    (["stage=sft1", "stage.inputs.dataset=sft2"], r"stage\.inputs\.dataset: 'sft2' is not a stage that produces a "
                                                  r"dataset \(cold_start, rejection_sampling, distill\)"),
    # an SFT trainer field that TRL does not have
    (["stage=sft1", "+stage.trainer.lerning_rate=1"], r"stage\.trainer\.lerning_rate: not a field of trl\.SFTConfig"),
    # pipeline order that feeds a stage before its input is made
    (["stage=pipeline", "stage.order=[sft1,cold_start]"], r"stage\.sft1\.inputs\.dataset: 'cold_start' does not run before sft1"),
])
def test_hand_off_errors_name_the_stage_to_run_first(tmp_path, overrides, message):
    cfg = compose_cfg(["model=tiny_random", "dataset.train_size=8", "dataset.test_size=4", *overrides],
                      run_dir=tmp_path / "run")
    with pytest.raises(ConfigError, match=message):
        run_stage(cfg)
    assert not (tmp_path / "run" / cfg.stage.name).exists(), "a failed hand-off must not leave a stage directory"


def test_incomplete_input_stage_is_not_used(tmp_path):
    d = tmp_path / "run" / "cold_start"
    d.mkdir(parents=True)
    (d / "manifest.json").write_text(json.dumps({"status": "running", "outputs": {}}))
    with pytest.raises(ConfigError, match="run stage cold_start first"):
        run_stage(compose_cfg(["model=tiny_random", "stage=sft1"], run_dir=tmp_path / "run"))
