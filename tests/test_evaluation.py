"""Evaluation a reviewer can check: Wilson and bootstrap intervals against known numbers, strict and format-free
scores of one pass, one results table for several benchmarks, and eval settings refused before anything loads."""
from __future__ import annotations

import math

import pytest
from omegaconf import OmegaConf

from conftest import compose_cfg, fake_eval_row
from r1pipeline.benchmarks import check, dataset_names
from r1pipeline.errors import ConfigError
from r1pipeline.evaluation import bootstrap, interval, score_pass, wilson
from r1pipeline.sampling import Sample
from r1pipeline.voting import NumberVoter

# ---------------------------------------------------------------- intervals


@pytest.mark.parametrize("successes,n,expected", [
    (0, 10, (0.0, 0.2775)),       # nothing right: the upper bound is not 0 (the normal approximation would say so)
    (5, 10, (0.2366, 0.7634)),    # half: symmetric around 0.5
    (200, 200, (0.9812, 1.0)),    # everything right on 200 prompts
    (81, 263, (0.2553, 0.3662)),  # an uneven case: the interval is not centred on 81/263 = 0.308
    (1, 1, (0.2065, 1.0)),        # one prompt says little
    (0, 0, (0.0, 1.0)),           # no prompts: the whole range
])
def test_wilson_interval_matches_known_values(successes, n, expected):
    assert wilson(successes, n) == pytest.approx(expected, abs=5e-5)


@pytest.mark.parametrize("successes,n", [(0, 10), (5, 10), (81, 263), (3, 200), (199, 200)])
def test_wilson_bounds_are_where_the_score_test_sits_at_its_critical_value(successes, n):
    # Wilson's interval is every p whose score statistic (phat - p) / sqrt(p (1 - p) / n) is within +-1.96: at each
    # bound inside (0, 1) it equals the critical value exactly.
    phat = successes / n
    for p in wilson(successes, n):
        if 0 < p < 1:
            assert abs(phat - p) / math.sqrt(p * (1 - p) / n) == pytest.approx(1.959963984540054)


def test_wilson_bounds_always_hold_the_share_and_reach_0_and_1_exactly():
    # 0 of 3 once gave a lower bound of 5.6e-17 (above the share: a negative error bar that matplotlib refuses)
    for n in range(1, 301):
        for successes in range(n + 1):
            lo, hi = wilson(successes, n)
            assert 0.0 <= lo <= successes / n <= hi <= 1.0, (successes, n)
        assert wilson(0, n)[0] == 0.0 and wilson(n, n)[1] == 1.0, n


def test_stages_png_draws_bounds_that_touch_the_value(tmp_path):
    from r1pipeline.plots import plot_stages

    rows = [fake_eval_row("base", "countdown", 0.0), fake_eval_row("sft2", "countdown", 0.5)]
    rows[0].update({"greedy/strict_lo": 5.6e-17, "greedy/strict_hi": 0.66})  # a bound a rounding error off the value
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(f'{{"step": {i}, "reward": 0.5, "rewards/correct/mean": 0.25}}\n' for i in (1, 2)))
    assert plot_stages(rows, {"r1_zero": metrics}, tmp_path / "stages.png").read_bytes()[:4] == b"\x89PNG"


def test_bootstrap_is_reproducible_by_seed_and_contains_the_mean():
    shares = [0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 0.5, 0.0, 0.25, 0.75] * 5  # 50 prompts, k=4: mean 0.5
    a, b, c = bootstrap(shares, 2000, seed=0), bootstrap(shares, 2000, seed=0), bootstrap(shares, 2000, seed=1)
    assert a == b and a != c  # the same seed, the same interval; another seed, another
    assert a[0] < 0.5 < a[1] and c[0] < 0.5 < c[1]
    assert 0.35 < a[0] < 0.45 and 0.55 < a[1] < 0.65  # half-width ~1.96 * sd / sqrt(n) = 1.96 * 0.35 / 7.07 ~ 0.1
    assert bootstrap([0.5] * 8, 2000, seed=0) == (0.5, 0.5)  # no spread, no width


def test_interval_is_wilson_for_zero_one_values_and_bootstrap_for_shares():
    assert interval([1.0, 0.0, 1.0, 1.0], True, 2000, 0) == {"": 0.75, "_lo": wilson(3, 4)[0], "_hi": wilson(3, 4)[1]}
    lo, hi = bootstrap([0.5, 0.25], 2000, 7)
    assert interval([0.5, 0.25], False, 2000, 7) == {"": 0.375, "_lo": lo, "_hi": hi}
    # nothing solved on 10 prompts: no resample can vary the mean, so not the bootstrap's [0, 0] but Wilson's 0 of 10
    assert interval([0.0] * 10, False, 2000, 0) == {"": 0.0, "_lo": 0.0, "_hi": pytest.approx(0.2775, abs=5e-5)}
    assert interval([0.5] * 10, False, 2000, 0) == {"": 0.5, "_lo": wilson(5, 10)[0], "_hi": wilson(5, 10)[1]}


# ---------------------------------------------------------------- one pass, both readings

PROMPT = [{"role": "user", "content": "Calculate 4 + 4."}, {"role": "assistant", "content": "<think>"}]


def _samples(per_prompt):
    return [[Sample(p, j, text, "<think>" + text, 5, {"strict": strict, "free": free}, 0)
             for j, (text, strict, free) in enumerate(texts)] for p, texts in enumerate(per_prompt)]


def test_a_sampled_pass_scores_strict_and_format_free_with_intervals():
    per_prompt = _samples([
        [(" 4+4=8 </think><answer>8</answer>", 1.0, 1.0),        # R1 format, right
         (" so 8.0</think> <answer> 8.0 </answer>", 1.0, 1.0),   # R1 format, right, another spelling: same vote
         (" I think it is 9", 0.0, 0.0)],                        # no format, wrong: a free vote only
        [(" the answer is 8", 0.0, 1.0),                         # right but outside the tags: free only
         (" hmm</think><answer>7</answer>", 0.0, 0.0),           # R1 format, wrong
         (" 8 it is", 0.0, 1.0)],                                # right outside the tags again
    ])
    boot = OmegaConf.create({"resamples": 2000, "seed": 0})
    row, answers = score_pass("sampled", per_prompt, [PROMPT, PROMPT], 1.0, NumberVoter(), boot)
    strict_lo, strict_hi = bootstrap([2 / 3, 0.0], 2000, 0)
    free_lo, free_hi = wilson(4 / 3, 2)  # both prompts 2 of 3: no spread for a bootstrap to see
    assert row == pytest.approx({
        "pass@1/strict": 1 / 3, "pass@1/strict_lo": strict_lo, "pass@1/strict_hi": strict_hi,
        "pass@1/free": 2 / 3, "pass@1/free_lo": free_lo, "pass@1/free_hi": free_hi,
        "maj@k/strict": 0.5, "maj@k/strict_lo": wilson(1, 2)[0], "maj@k/strict_hi": wilson(1, 2)[1],
        "maj@k/free": 1.0, "maj@k/free_lo": wilson(2, 2)[0], "maj@k/free_hi": wilson(2, 2)[1]})
    assert answers == {(0, 0): {"strict": "8", "free": "8"}, (0, 1): {"strict": "8.0", "free": "8.0"},
                       (0, 2): {"strict": None, "free": "9"}, (1, 0): {"strict": None, "free": "8"},
                       (1, 1): {"strict": "7", "free": "7"}, (1, 2): {"strict": None, "free": "8"}}


def test_a_greedy_pass_is_one_zero_one_per_prompt_with_wilson_intervals():
    per_prompt = _samples([[(" 8</think><answer>8</answer>", 1.0, 1.0)], [(" it is 8", 0.0, 1.0)],
                           [(" 9", 0.0, 0.0)]])
    row, _ = score_pass("greedy", per_prompt, [PROMPT] * 3, 1.0, NumberVoter(),
                        OmegaConf.create({"resamples": 2000, "seed": 0}))
    assert row == pytest.approx({"greedy/strict": 1 / 3, "greedy/strict_lo": wilson(1, 3)[0],
                                 "greedy/strict_hi": wilson(1, 3)[1], "greedy/free": 2 / 3,
                                 "greedy/free_lo": wilson(2, 3)[0], "greedy/free_hi": wilson(2, 3)[1]})


# ---------------------------------------------------------------- the table, several benchmarks

def test_one_table_has_a_row_per_model_and_a_column_group_per_benchmark():
    from types import SimpleNamespace

    from r1pipeline.stages.eval import markdown_tables

    stage = compose_cfg(["stage=eval", "stage.k=2"]).stage
    benches = [SimpleNamespace(name="countdown", data=[0] * 4), SimpleNamespace(name="basic_arithmetic", data=[0] * 4)]
    rows = [fake_eval_row("base", "countdown", 0.1), fake_eval_row("base", "basic_arithmetic", 0.3),
            fake_eval_row("sft2", "countdown", 0.5)]
    table = markdown_tables(rows, stage, benches)
    caption, scores, generation = table.split("\n\n")
    assert caption == (
        "Held-out scores per model (countdown: 4 test prompts; basic_arithmetic: 4 test prompts); greedy "
        "(temperature 0) and k=2 samples (temperature 0.6, top_p 0.95), at most 256 new tokens. strict: the "
        "dataset's check on the answer of a response in R1 format (answer_from: strict); free: the same check on the "
        "response's final answer wherever it stands (answer_from: anywhere). 95% intervals over prompts in brackets: "
        "greedy pass@1, maj@2: Wilson; pass@1 (a mean of per-prompt shares): bootstrap over prompts (2000 "
        "resamples, seed 0; Wilson at the mean where every prompt has the same share).")
    groups = [f"{b} {s} {r}" for b in ("countdown", "basic_arithmetic")
              for s in ("greedy pass@1", "pass@1 (k=2)", "maj@2") for r in ("strict", "free")]
    assert scores.splitlines() == [
        "| model | " + " | ".join(groups) + " |",
        "|" + "---|" * 13,
        "| base | " + " | ".join(["0.100 [0.050, 0.150]", "0.200 [0.150, 0.250]"] * 3
                                 + ["0.300 [0.250, 0.350]", "0.400 [0.350, 0.450]"] * 3) + " |",
        "| sft2 | " + " | ".join(["0.500 [0.450, 0.550]", "0.600 [0.550, 0.650]"] * 3 + [""] * 6) + " |",
    ]
    assert generation.splitlines()[2:] == ["| base | 12.5 | 30.0 | 900 | 12.5 | 30.0 | 900 |",
                                           "| sft2 | 12.5 | 30.0 | 900 |  |  |  |"]


def test_greedy_only_needs_no_sampling_and_says_so():
    from types import SimpleNamespace

    from r1pipeline.stages.eval import markdown_tables

    stage = compose_cfg(["stage=eval", "stage.k=0"]).stage
    rows = [{k: v for k, v in fake_eval_row("base", "countdown", 0.1).items() if not k.startswith(("pass@1", "maj@k"))}]
    table = markdown_tables(rows, stage, [SimpleNamespace(name="countdown", data=[0] * 4)])
    assert "95% intervals over prompts in brackets: greedy pass@1: Wilson." in table
    assert "| model | greedy pass@1 strict | greedy pass@1 free |" in table


@pytest.mark.parametrize("overrides,message", [
    (["stage.k=0", "stage.greedy=false"], r"^stage\.k: 0 with stage\.greedy=false leaves nothing to score"),
    (["stage.k=-1"], r"^stage\.k: -1 must be a number of samples per prompt"),
    (["stage.bootstrap.resamples=10"], r"^stage\.bootstrap\.resamples: 10 is too few"),
    (["stage.datasets=[countdown,no_such_set]"], r"^stage\.datasets: 'no_such_set' is not a dataset config; choose"),
    (["stage.datasets=[countdown,countdown]"], r"^stage\.datasets: \['countdown', 'countdown'\] must be distinct"),
    # a check fixed to one reading cannot give both columns
    (["stage.verify=[{countdown: {answer_from: tags}}]"],
     r"^stage\.verify\.countdown\.answer_from: 'tags' fixes where the check reads the answer, and this stage reads "
     r"it as strict and anywhere; remove answer_from there \(benchmark countdown\)$"),
])
def test_eval_settings_that_cannot_work_are_refused_before_anything_loads(overrides, message):
    from r1pipeline.config import validate

    with pytest.raises(ConfigError, match=message):
        validate(compose_cfg(["model=tiny_random", "stage=eval", "dataset=countdown", *overrides]))


def test_the_pipeline_checks_its_eval_benchmarks_before_the_first_stage_trains(tmp_path):
    from r1pipeline.cli import run_stage

    cfg = compose_cfg(["model=tiny_random", "stage=pipeline", "stage.eval.datasets=[gsm8k,countdwn]"],
                      run_dir=tmp_path / "run")
    with pytest.raises(ConfigError, match=r"^stage\.eval\.datasets: 'countdwn' is not a dataset config"):
        run_stage(cfg)
    assert not (tmp_path / "run" / "r1_zero").exists()


@pytest.mark.parametrize("name", dataset_names())
def test_every_dataset_config_can_be_an_eval_benchmark(name):
    # its name composes and its declared check reads answers both strictly and format-free (config only, no data)
    check(compose_cfg(["stage=eval", "dataset=countdown", f"stage.datasets=[{name}]"]))


def test_each_benchmark_is_verified_by_its_own_check_unless_one_is_set():
    from r1pipeline.benchmarks import benchmark_cfgs

    cfg = compose_cfg(["stage=eval", "dataset=countdown", "stage.datasets=[countdown,gsm8k,countdown_reference]",
                       "dataset.seed=7"])
    subs = benchmark_cfgs(cfg)
    assert {n: OmegaConf.to_container(s.stage.verify, resolve=True) for n, s in subs.items()} == {
        "countdown": ["countdown"], "gsm8k": [{"accuracy": {"reference_column": "answer"}}],
        "countdown_reference": ["countdown"]}
    # the run's own dataset keeps its overrides; another composes as `dataset=<name>` would (defaults included)
    assert (subs["countdown"].dataset.seed, subs["countdown_reference"].dataset.seed) == (7, 0)
    assert subs["countdown_reference"].dataset.params.max_numbers == 3
    fixed = benchmark_cfgs(compose_cfg(["stage=eval", "stage.datasets=[countdown,basic_arithmetic]",
                                        "stage.verify=[tag_count]"]))
    assert [OmegaConf.to_container(s.stage.verify) for s in fixed.values()] == [["tag_count"], ["tag_count"]]
