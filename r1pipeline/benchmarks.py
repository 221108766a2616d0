"""The benchmarks one eval run scores: `stage.datasets` (names of conf/dataset/ configs), or the run's own dataset.

Each named dataset is composed as `dataset=<name>` would compose it (Hydra's compose API over conf/, defaults
included), except the run's own dataset, which is taken as the run composed it (overrides such as `dataset.seed`
included), so that its held-out rows are the ones training never saw. The verify list is resolved per benchmark:
the default `${dataset.verify}` becomes each dataset's own check, an explicit `stage.verify` applies to all.
`check` runs before any data or model loads (config.validate, through the eval stage's check); `load` builds each benchmark's held-out rows and
checks that its verifier finds the columns it reads, before any model loads.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from omegaconf import DictConfig, OmegaConf, open_dict

from r1pipeline.composing import compose, options
from r1pipeline.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class Benchmark:
    name: str
    cfg: DictConfig   # the run's config with `dataset` = this benchmark's
    data: object      # its held-out rows (datasets.Dataset), the first stage.num_prompts
    verifiers: object  # verify.Verifiers: the benchmark's check, strict and format-free
    voter: object     # voting.*Voter: when two of its answers are one maj@k vote


def dataset_names() -> list[str]:
    return options("dataset")


def compose_dataset(name: str) -> DictConfig:
    """conf/dataset/<name>.yaml composed by Hydra, as `dataset=<name>` on the command line composes it."""
    if name not in dataset_names():
        raise ConfigError(f"stage.datasets: {name!r} is not a dataset config; choose from {dataset_names()}")
    return copy.deepcopy(compose(f"dataset={name}").dataset)


def benchmark_cfgs(cfg) -> dict[str, DictConfig]:
    """{name: the run's config with that benchmark as its dataset}, in `stage.datasets` order."""
    names = list(cfg.stage.get("datasets") or [cfg.dataset.name])
    if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise ConfigError(f"stage.datasets: {names} must be distinct dataset config names, e.g. "
                          f"[countdown, basic_arithmetic]")
    out = {}
    for name in names:
        sub = copy.deepcopy(cfg)
        if name != cfg.dataset.name:
            with open_dict(sub):
                sub.dataset = compose_dataset(name)
        out[name] = sub
    return out


def check(cfg) -> None:
    """Config-level checks of every benchmark: its name composes, its dataset block holds, and its verify list
    reads answers both ways."""
    from r1pipeline import data
    from r1pipeline.evaluation import READINGS
    from r1pipeline.verify import check_verifier

    for name, sub in benchmark_cfgs(cfg).items():
        try:
            data.check(sub.dataset)
            check_verifier(sub.stage.verify, answer_from=tuple(READINGS.values()))
        except ConfigError as exc:
            raise ConfigError(f"{exc} (benchmark {name})") from exc


def load(cfg) -> list[Benchmark]:
    """Every benchmark's held-out rows, verifiers and voter; ConfigError before any model loads."""
    from r1pipeline.data import build_dataset
    from r1pipeline.evaluation import READINGS
    from r1pipeline.verify import Verifiers, check_verifier
    from r1pipeline.voting import voter_for

    out = []
    for name, sub in benchmark_cfgs(cfg).items():
        test = build_dataset(sub.dataset, cfg.model.path)["test"]
        if len(test) < cfg.stage.num_prompts:
            log.warning("eval %s: stage.num_prompts=%d but its test split holds %d prompts; scoring %d (raise "
                        "dataset.test_size for the whole run: a larger test split after training is not held out)",
                        name, cfg.stage.num_prompts, len(test), len(test))
        data = test.select(range(min(cfg.stage.num_prompts, len(test))))
        verify = OmegaConf.to_container(sub.stage.verify, resolve=True)
        try:
            check_verifier(verify, set(data.column_names))
        except ConfigError as exc:
            raise ConfigError(f"{exc} (benchmark {name})") from exc
        out.append(Benchmark(name, sub, data, Verifiers(verify, READINGS), voter_for(verify)))
    return out
