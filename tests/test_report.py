"""Several runs (seeds) of one recipe combined into one report: mean and range per model and benchmark."""
from __future__ import annotations

import csv
import json

from conftest import fake_eval_row

def _fake_run(run_dir, seed, scores):
    """An eval directory as the eval stage writes it: results.csv and a manifest with the run's seeds."""
    from r1pipeline.stages.eval import COLUMNS

    d = run_dir / "eval"
    d.mkdir(parents=True)
    with (d / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(fake_eval_row(model, "countdown", s) for model, s in scores)
    (d / "manifest.json").write_text(json.dumps({"config": {"seed": seed, "dataset": {"seed": 0}}}))


def test_report_combines_seeds_into_mean_and_range(tmp_path, capsys):
    from r1pipeline.report import main

    _fake_run(tmp_path / "s1", 1, [("base", 0.1), ("sft2", 0.4)])
    _fake_run(tmp_path / "s2", 2, [("base", 0.2), ("sft2", 0.5)])
    _fake_run(tmp_path / "s3", 3, [("base", 0.0), ("sft2", 0.15)])
    main([str(tmp_path / "s1"), str(tmp_path / "s2" / "eval"), str(tmp_path / "s3"), "--out", str(tmp_path / "rep")])
    md = (tmp_path / "rep" / "seeds.md").read_text()
    assert md == (
        f"3 runs: {tmp_path}/s1 (seed 1, dataset.seed 0); {tmp_path}/s2/eval (seed 2, dataset.seed 0); "
        f"{tmp_path}/s3 (seed 3, dataset.seed 0)\n"
        "\ngreedy pass@1, mean [min, max] over the runs (strict: R1 format required; free: format-free).\n\n"
        "| model | countdown strict | countdown free |\n|---|---|---|\n"
        "| base | 0.100 [0.000, 0.200] | 0.200 [0.100, 0.300] |\n"
        "| sft2 | 0.350 [0.150, 0.500] | 0.450 [0.250, 0.600] |\n"
        "\ncountdown strict: final model - base per run: +0.300, +0.300, +0.150\n"
        "\ncountdown free: final model - base per run: +0.300, +0.300, +0.150\n")
    assert md in capsys.readouterr().out
    rows = list(csv.DictReader((tmp_path / "rep" / "seeds.csv").open()))
    assert [(r["model"], r["runs"], r["greedy/strict_mean"], r["greedy/strict_min"], r["greedy/strict_max"])
            for r in rows] == [("base", "3", "0.1", "0.0", "0.2"), ("sft2", "3", "0.35", "0.15", "0.5")]
    assert (tmp_path / "rep" / "seeds.png").read_bytes()[:4] == b"\x89PNG"


def test_report_says_when_a_run_shows_no_gain(tmp_path):
    from r1pipeline.report import write_report

    _fake_run(tmp_path / "s1", 1, [("base", 0.2), ("sft2", 0.4)])
    _fake_run(tmp_path / "s2", 2, [("base", 0.3), ("sft2", 0.3)])
    md = write_report([tmp_path / "s1", tmp_path / "s2"], tmp_path / "rep")
    assert "countdown strict: final model - base per run: +0.200, +0.000 (at or below base in some run)" in md
