"""Datasets for every stage, built offline by default.

`build_dataset(cfg.dataset)` returns a `DatasetDict` with `train` and `test` splits whose rows carry
  - `prompt`: the conversation to continue (system, user, and the optional assistant prefill),
  - `answer`: the reference answer as a string (what accuracy-style rewards compare against),
  - the task's own columns (Countdown: `nums`, `target`; reasoning-gym: `task`, `metadata`).
Sources: `reasoning_gym` (procedural, offline, reproducible by seed), `hub` (`datasets.load_dataset(path)`:
a hub id, or a local directory/file in the same schema) and `local` (a JSON/JSONL/CSV/Parquet file).
Held-out rows never touch training: the dataset's own test split where it has one (`dataset.test_split`), disjoint
seeds for procedural tasks, and no training row whose prompt equals a test prompt (`drop_test_prompts`).
`dataset.max_prompt_tokens` drops prompts longer than that for the model's tokenizer (`drop_long_prompts`).
"""
from __future__ import annotations

import json
import logging
import string
import zlib
from pathlib import Path

from datasets import Dataset, DatasetDict

from r1pipeline.errors import ConfigError
from r1pipeline.rewards.text import last_boxed
from r1pipeline.typecheck import number

log = logging.getLogger(__name__)

SOURCES = ("reasoning_gym", "hub", "local")


def check(dcfg, where: str = "dataset") -> None:
    """The dataset block, before any row is built: source, sizes, seed, answer extraction and prompt."""
    if dcfg.source not in SOURCES:
        raise ConfigError(f"{where}.source: {dcfg.source!r} is unknown; use one of {SOURCES}")
    procedural = dcfg.source == "reasoning_gym"
    if procedural and not isinstance(dcfg.get("task"), str):
        raise ConfigError(f"{where}.task: {dcfg.get('task')!r} must name a reasoning-gym task, e.g. {where}.task=countdown")
    if not procedural and not isinstance(dcfg.get("path"), str):
        raise ConfigError(f"{where}.path: {dcfg.get('path')!r}: source {dcfg.source} needs a hub id or a local path")
    if dcfg.get("train_size") is not None or procedural:  # hub and local data: null takes every training row
        number(dcfg.get("train_size"), f"{where}.train_size", low=1, integer=True, example=2000)
    check_test_size(dcfg, where)
    if dcfg.get("max_prompt_tokens") is not None:
        number(dcfg.max_prompt_tokens, f"{where}.max_prompt_tokens", low=1, integer=True, example=256)
    number(dcfg.get("seed"), f"{where}.seed", integer=True, example=0)
    how = dcfg.get("answer_extract")
    if how is not None and how not in ANSWER_EXTRACTORS:
        raise ConfigError(f"{where}.answer_extract: {how!r} is not one of {sorted(ANSWER_EXTRACTORS)} (or null)")
    prompt = dcfg.prompt
    if not isinstance(prompt.get("user_template"), str):
        raise ConfigError(f"{where}.prompt.user_template: must be a string with the row's columns in braces, e.g. "
                          f"'{{question}}'")
    for key in ("system", "example", "prefill"):
        if prompt.get(key) is not None and not isinstance(prompt[key], str):
            raise ConfigError(f"{where}.prompt.{key}: {prompt[key]!r} must be a string or null")


def carves_test_split(dcfg) -> bool:
    """Whether the test rows are cut out of the training split (no test split of its own, or a single local file)."""
    return dcfg.source != "reasoning_gym" and (dcfg.get("test_split") is None or
                                               (dcfg.source == "local" and bool(dcfg.get("split"))))


def check_test_size(dcfg, where: str) -> None:
    """`test_size`: a number of held-out rows, or, where they are carved out of train, a share of its rows (0 < x < 1,
    as datasets' train_test_split reads it: seeds/004 holds out 10% of Countdown-Tasks-3to4)."""
    size = dcfg.get("test_size")
    if isinstance(size, float) and not size.is_integer():
        if not carves_test_split(dcfg):
            raise ConfigError(f"{where}.test_size: {size} is a share, and {dcfg.name!r} has a test split of its own "
                              f"(or other seeds); give a number of rows, e.g. {where}.test_size=100")
        number(size, f"{where}.test_size", low=0, high=1, example=0.1)
        if not 0 < size < 1:
            raise ConfigError(f"{where}.test_size: {size} must be a share between 0 and 1, or a number of rows")
        return
    number(size, f"{where}.test_size", low=1, integer=True, example=100)


def check_training_split(dcfg, stage: str) -> None:
    """A stage that draws training rows refuses a dataset that has none (`dataset.split: null`, e.g. MATH-500: a
    test set as a whole, none of its rows may be trained on)."""
    if dcfg.get("split") is None and dcfg.source != "reasoning_gym":
        raise ConfigError(f"dataset.split: null - dataset {dcfg.name!r} has no training split (it is a test set as a "
                          f"whole: none of its rows may be trained on), and stage {stage} draws training rows; train "
                          f"on another dataset (e.g. dataset=numina_math_tir) and use dataset={dcfg.name} with "
                          f"stage=eval")


def template_fields(template: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(template) if f}


def make_prompt(row: dict, prompt_cfg) -> list[dict]:
    """The R1-Zero conversation for one row: system prompt (and its worked example), user turn from the template,
    optional prefill."""
    values = {k: (", ".join(map(str, v)) if isinstance(v, list) else v) for k, v in row.items()}
    messages = []
    system = prompt_cfg.system
    if prompt_cfg.get("example"):  # a worked example, shown after the system prompt
        system = f"{system}\nExample:\n{prompt_cfg.example}"
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": prompt_cfg.user_template.format(**values)})
    if prompt_cfg.prefill:
        messages.append({"role": "assistant", "content": prompt_cfg.prefill})
    return messages


def _reasoning_gym_rows(dcfg, size: int, seed: int) -> list[dict]:
    import reasoning_gym

    try:
        data = reasoning_gym.create_dataset(dcfg.task, size=size, seed=seed, **dict(dcfg.params or {}))
    except (TypeError, AssertionError, ValueError, KeyError) as exc:
        raise ConfigError(f"dataset.task/params: reasoning-gym rejected {dcfg.task!r} with {dict(dcfg.params or {})}: {exc}") from exc
    rows = []
    for entry in data:
        meta = entry["metadata"]
        row = {"question": entry["question"], "answer": str(entry["answer"]), "task": dcfg.task,
               "metadata": json.dumps(meta, default=str)}
        if dcfg.task == "countdown":
            row["nums"], row["target"] = [int(n) for n in meta["numbers"]], int(meta["target"])
        rows.append(row)
    return rows


def load_files(dcfg, split: str | None = None) -> Dataset:
    """One split (`split`, default `dataset.split`) of a hub dataset or local copy, or a local file."""
    from datasets import load_dataset

    path, split = dcfg.path, split or dcfg.get("split")
    if dcfg.source == "local":
        p = Path(path).expanduser()
        if not p.exists():
            raise ConfigError(f"dataset.path: {path} does not exist; point it at a .jsonl/.json/.csv/.parquet file")
        kind = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}.get(p.suffix)
        if kind is None:
            raise ConfigError(f"dataset.path: {path} has an unsupported suffix; use .jsonl, .json, .csv or .parquet")
        return load_dataset(kind, data_files=str(p), split="train")
    subset = dcfg.get("subset")
    if subset and Path(path).expanduser().is_dir():
        # A local copy of a hub dataset: its subset is a subdirectory when saved with several, else the copy itself.
        local = Path(path).expanduser()
        path, subset = (str(local / subset), None) if (local / subset).is_dir() else (str(local), None)
    try:
        return load_dataset(path, subset, split=split)
    except Exception as exc:  # noqa: BLE001 - hub and file errors come in many types
        raise ConfigError(f"dataset.path: could not load {path!r} (split {split!r}): {exc}. Offline? "
                          f"Point dataset.path at a local copy in the same schema (a copy without a "
                          f"{dcfg.get('test_split')!r} split: dataset.test_split=null carves one out).") from exc


def _rename(ds: Dataset, dcfg) -> Dataset:
    mapping = dict(dcfg.get("columns") or {})  # ours: theirs
    missing = [theirs for theirs in mapping.values() if theirs not in ds.column_names]
    if missing:
        raise ConfigError(f"dataset.columns: {dcfg.path} has no column(s) {missing} (it has {ds.column_names}); "
                          f"fix dataset.columns (ours: theirs)")
    return ds.rename_columns({theirs: ours for ours, theirs in mapping.items() if ours != theirs})


def _after_hashes(text: str) -> str:
    return text.rsplit("####", 1)[-1].strip().replace(",", "")


def _last_boxed(text: str) -> str:
    """Content of the last \\boxed{...} (balanced braces), or the text unchanged when there is none."""
    boxed = last_boxed(text)
    return text.strip() if boxed is None else boxed


# dataset.answer_extract: how to get the short reference answer out of a dataset's answer/solution column.
ANSWER_EXTRACTORS = {"after_hashes": _after_hashes, "last_boxed": _last_boxed}  # GSM8K "#### 42"; MATH \\boxed{}


def _extract_answer(ds: Dataset, dcfg) -> Dataset:
    how = dcfg.get("answer_extract")
    if not how:
        return ds
    if "answer" not in ds.column_names:
        raise ConfigError(f"dataset.answer_extract: {how!r} reads an `answer` column, which {dcfg.path} lacks (it has "
                          f"{ds.column_names}); map one with dataset.columns")
    return ds.map(lambda r: {"answer": ANSWER_EXTRACTORS[how](str(r["answer"]))})


def _prepare(ds: Dataset, dcfg) -> Dataset:
    """Our column names, the short reference answer, and `answer` as a string."""
    ds = _extract_answer(_rename(ds, dcfg), dcfg)
    if "answer" in ds.column_names and ds.features["answer"].dtype != "string":
        ds = ds.map(lambda r: {"answer": str(r["answer"])})
    return ds


def _file_splits(dcfg) -> tuple[Dataset | None, Dataset]:
    """(train, test) of a hub/local dataset. Held-out rows come from the dataset's own `test_split` when it names
    one (GSM8K `test`); else, and always for a single local file (`source: local`), `test_size` rows are carved out
    of `split`, disjoint by construction. Train is None for a dataset without a training split (`split: null`:
    MATH-500 is a test set as a whole)."""
    test_split = dcfg.get("test_split")
    if carves_test_split(dcfg):
        full = _prepare(load_files(dcfg), dcfg)
        share = dcfg.test_size < 1  # a share goes to datasets as is (it rounds the test rows up)
        n_test = dcfg.test_size if share else min(dcfg.test_size, max(1, len(full) // 5))
        split = full.train_test_split(test_size=n_test, seed=dcfg.seed)
        return split["train"], split["test"]
    if test_split == dcfg.get("split"):
        raise ConfigError(f"dataset.split: {test_split!r} is also dataset.test_split, so training would see the "
                          f"held-out rows; train on another split (e.g. dataset.split=train)")
    test = _prepare(load_files(dcfg, test_split), dcfg).shuffle(seed=dcfg.seed)
    test = test.select(range(min(dcfg.test_size, len(test))))
    return (_prepare(load_files(dcfg), dcfg) if dcfg.get("split") else None), test


def drop_test_prompts(data: DatasetDict) -> DatasetDict:
    """Drop from train every row whose prompt equals a test prompt. Procedural tasks draw train and test from
    disjoint seeds, but a small problem space (two single-digit terms) repeats problems by chance, and a hub
    dataset's splits may share questions."""
    test = {json.dumps(p, sort_keys=True) for p in data["test"]["prompt"]}
    train = data["train"].filter(lambda r: json.dumps(r["prompt"], sort_keys=True) not in test)
    dropped = len(data["train"]) - len(train)
    if dropped:
        log.info("held-out split: dropped %d of %d training rows whose prompt is also a test prompt", dropped,
                 len(data["train"]))
    return DatasetDict({"train": train, "test": data["test"]})


def draw_prompts(train: Dataset, n: int | None, seed: int, stage: str) -> Dataset:
    """`n` training rows for a sampling stage (None: all of them), drawn at random by the run's `seed` and the
    stage's name: another seed samples other prompts, and cold start and rejection sampling do not take the same
    first rows."""
    salt = zlib.crc32(stage.encode()) % 100_003
    n = len(train) if n is None else min(n, len(train))
    return train.shuffle(seed=seed * 100_003 + salt).select(range(n))


def prompt_tokens(prompts: list, tok) -> list[int]:
    """How many tokens each conversational prompt is for the model: its chat template with the generation prompt or
    the open prefill (rollout.chat_prompt_ids), with the model's tokenizer `tok`."""
    from r1pipeline.rollout import chat_prompt_ids

    return [len(chat_prompt_ids(tok, p)) for p in prompts]


def drop_long_prompts(data: DatasetDict, limit: int, tokenizer_from: str) -> DatasetDict:
    """Drop the rows whose prompt is over `limit` tokens (`dataset.max_prompt_tokens`) from train and test, with
    the count logged. Dropped rather than cut: a prompt cut short loses its question (GRPO trainers that had
    max_prompt_length kept its end). A split left with nothing is a ConfigError naming the field."""
    from r1pipeline.models import load_tokenizer, resolve_model_path

    tok, out = load_tokenizer(resolve_model_path(tokenizer_from)), {}  # loaded once for every split
    for split, ds in data.items():
        lengths = prompt_tokens(ds["prompt"], tok)
        keep = [i for i, n in enumerate(lengths) if n <= limit]
        if lengths and not keep:
            raise ConfigError(f"dataset.max_prompt_tokens: every one of the {len(lengths)} {split} prompts is over "
                              f"{limit} tokens (chat template and prefill included; the shortest has {min(lengths)}); "
                              f"raise dataset.max_prompt_tokens to at least {min(lengths)} or set it to null")
        if len(keep) < len(lengths):
            log.info("dataset.max_prompt_tokens=%d: dropped %d of %d %s prompts (longest %d tokens)", limit,
                     len(lengths) - len(keep), len(lengths), split, max(lengths))
        out[split] = ds.select(keep)
    return DatasetDict(out)


def build_dataset(dcfg, tokenizer_from: str | None = None) -> DatasetDict:
    """The `train` and `test` splits of the configured dataset, prompts built, no test prompt among the training
    prompts; with `dataset.max_prompt_tokens`, no prompt over that many tokens for the tokenizer of `tokenizer_from`
    (the run's model.path: every stage of a run reads the same rows)."""
    if dcfg.source == "reasoning_gym":
        train = Dataset.from_list(_reasoning_gym_rows(dcfg, dcfg.train_size, dcfg.seed))
        test = Dataset.from_list(_reasoning_gym_rows(dcfg, dcfg.test_size, dcfg.seed + 1_000_003))
    else:
        train, test = _file_splits(dcfg)
        if train is not None and dcfg.train_size and dcfg.train_size < len(train):
            train = train.select(range(dcfg.train_size))
    needed = template_fields(dcfg.prompt.user_template)
    missing = sorted(needed - set(test.column_names))
    if missing:
        raise ConfigError(f"dataset.prompt.user_template: uses column(s) {missing} that dataset {dcfg.name!r} lacks "
                          f"(it has {test.column_names}); map them with dataset.columns or change the template")
    test = test.map(lambda row: {"prompt": make_prompt(row, dcfg.prompt)})
    train = test.select([]) if train is None else train.map(lambda row: {"prompt": make_prompt(row, dcfg.prompt)})
    data = drop_test_prompts(DatasetDict({"train": train, "test": test}))
    limit = dcfg.get("max_prompt_tokens")
    if limit is None:
        return data
    if tokenizer_from is None:
        raise ValueError("build_dataset: dataset.max_prompt_tokens counts tokens; pass tokenizer_from=cfg.model.path")
    return drop_long_prompts(data, limit, tokenizer_from)
