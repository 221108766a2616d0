"""ZeRO-3 on every commit: `hardware=cpu_zero3` runs DeepSpeed ZeRO-3 with parameters and optimizer state offloaded
to the CPU, two processes on DeepSpeed's CPU accelerator, through the accelerate config of `hardware=2x4090`
(launch/accelerate/zero3_offload.yaml). Real launches of `python -m r1pipeline` on the tiny model, few of them:

- one pipeline of every stage (the generating ones, reward_model then align, whose scorer loads inside a ZeRO-3
  trainer, distill), beside the same pipeline in one process: ZeRO-3 was in effect (per-rank shards, partitioned
  parameters, the DeepSpeed config in each checkpoint), every consolidated model loads with plain transformers and
  generates, and each stage wrote what the one-process run wrote (files, model config and parameter shapes, dataset
  row schema);
- kill -9 of every process mid-step, then run.resume=true from DeepSpeed's checkpoint: the metrics and weights of the
  uninterrupted run (the pipeline's r1_zero, the same stage config);
- two machines as Slurm starts them (`launch.sh` on each, machine ranks 0 and 1 on this host), with LoRA: a GRPO and
  an SFT stage train their adapters, and each stage hands on the base with its adapter merged in.

Every size is pinned here: the stage defaults are GPU-sized; experiment=pipeline_smoke stays small."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from conftest import ORDER, TINY_PIPELINE, compose_cfg
from r1pipeline.rundir import checkpoints

REPO = Path(__file__).resolve().parent.parent
KILLPOINTS = Path(__file__).resolve().parent / "killpoints"  # registers the test reward `test_length` (R1_TEST_REWARD)

# The pipeline: every stage, R1's last three included. r1_zero is the kill test's uninterrupted run: 4 steps, a
# checkpoint every 2, a reward that varies with the text (so a random model's steps move the weights).
R1_ZERO = {"max_steps": 4, "save_steps": 2, "per_device_train_batch_size": 4, "gradient_accumulation_steps": 1,
           "num_generations": 4, "max_completion_length": 8, "learning_rate": 1e-2, "eval_strategy": "no"}
ALL_STAGES = [*ORDER[:-1], "reward_model", "align", "distill", "eval"]
PIPELINE = [
    *TINY_PIPELINE, "tracking=none", "+reward.test_length.weight=1", f"stage.order=[{','.join(ALL_STAGES)}]",
    *(f"stage.r1_zero.trainer.{k}={v}" for k, v in R1_ZERO.items()),
    # reasoning_rl keeps pipeline_smoke's held-out evaluation (before and after its step): generation under ZeRO-3
    "stage.reward_model.preferences.size=8", "stage.reward_model.trainer.max_steps=2",
    "stage.reward_model.trainer.per_device_train_batch_size=2", "stage.reward_model.trainer.gradient_accumulation_steps=1",
    "stage.reward_model.trainer.max_length=256",
    # align: one step over all 8 reasoning + 4 general prompts (2 processes x 6 prompts x 2 completions), so the
    # reward model scores general rows inside the ZeRO-3 GRPO trainer
    "stage.align.general.size=4", "stage.align.trainer.max_steps=1", "stage.align.trainer.per_device_train_batch_size=12",
    "stage.align.trainer.gradient_accumulation_steps=1", "stage.align.trainer.num_generations=2",
    "stage.align.trainer.max_completion_length=8", "stage.align.trainer.eval_strategy=no",
    # distill: the sft2 model teaches a half-width student (its own model config)
    "model@stage.distill.student=tiny_random", "stage.distill.student.config_overrides.hidden_size=16",
    "stage.distill.student.config_overrides.intermediate_size=32",
    "stage.distill.student.config_overrides.num_attention_heads=2",
    "stage.distill.student.config_overrides.num_key_value_heads=1", "stage.distill.num_prompts=2",
    "stage.distill.samples_per_prompt=2", "stage.distill.verify=[tag_count]", "stage.distill.min_score=0.25",
    "stage.distill.generation.max_new_tokens=8", "stage.distill.generation.batch_size=2",
    "stage.distill.trainer.max_steps=2", "stage.distill.trainer.per_device_train_batch_size=2",
    "stage.distill.trainer.gradient_accumulation_steps=1", "stage.distill.trainer.max_length=256",
]
# Stages that train, with the kind of model they hand on.
CAUSAL = ["r1_zero", "sft1", "reasoning_rl", "sft2", "align", "distill"]
TRAINED = CAUSAL + ["reward_model"]
DATASETS = ["cold_start", "rejection_sampling", "distill"]
# What DeepSpeed writes into a checkpoint instead of transformers' optimizer.pt and rng_state.pth: each rank's
# shard of the weights and optimizer state, each rank's RNG state, and DeepSpeed's pointer and conversion scripts.
DEEPSPEED_ONLY = {"latest", "zero_to_fp32.py", "zero_to_torch.py", "rng_state_0.pth", "rng_state_1.pth"} | {
    f"global_step{{step}}/zero_pp_rank_{rank}_mp_rank_00_{kind}_states.pt" for rank in (0, 1)
    for kind in ("model", "optim")}
ONE_PROCESS_ONLY = {"optimizer.pt", "rng_state.pth"}


def _env() -> dict:  # one thread per process, as on 2 cores
    return {**os.environ, "PYTHONPATH": f"{KILLPOINTS}:{REPO}", "OMP_NUM_THREADS": "1", "R1_TEST_REWARD": "1"}


def _start(args, run_dir: Path, log_name="launch.log", env=None) -> subprocess.Popen:
    """`python -m r1pipeline ARGS run.dir=RUN_DIR`, its output in a file beside the run directory; its own session,
    so that a test can kill every process it started."""
    log = run_dir.parent / f"{run_dir.name}-{log_name}"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "r1pipeline", *args, f"run.dir={run_dir}"],
                                cwd=run_dir.parent, env=env or _env(), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    proc.log = log
    return proc


def _finish(proc: subprocess.Popen, timeout=900) -> None:
    assert proc.wait(timeout=timeout) == 0, proc.log.read_text()[-6000:]


def _manifest(run_dir: Path, stage: str) -> dict:
    return json.loads((run_dir / stage / "manifest.json").read_text())


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _files(stage_dir: Path) -> set[str]:
    return {p.relative_to(stage_dir).as_posix() for p in stage_dir.rglob("*") if p.is_file()}


def _shapes(model_dir: Path) -> dict:
    with safe_open(model_dir / "model.safetensors", "pt") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}


def _shards(checkpoint: Path) -> list[tuple[dict, dict]]:
    """(model states, optimizer states) of each rank of a DeepSpeed checkpoint."""
    (step_dir,) = checkpoint.glob("global_step*")
    return [tuple(torch.load(step_dir / f"zero_pp_rank_{rank}_mp_rank_00_{kind}_states.pt", map_location="cpu",
                             weights_only=False) for kind in ("model", "optim")) for rank in (0, 1)]


def _assert_zero3_partitioned(checkpoint: Path, trainable: int) -> None:
    """The checkpoint of a ZeRO-3 run over 2 processes, parameters and optimizer state offloaded to the CPU: no rank
    held a whole parameter, and the fp32 optimizer state of the `trainable` parameters is split in two halves."""
    parts = []
    for model_states, optim_states in _shards(checkpoint):
        zero = model_states["ds_config"]["zero_optimization"]
        assert (zero["stage"], zero["offload_param"]["device"], zero["offload_optimizer"]["device"]) == (3, "cpu", "cpu")
        assert model_states["dp_world_size"] == 2
        assert all(t.numel() == 0 for t in model_states["module"].values()), "a rank held a whole parameter"
        osd = optim_states["optimizer_state_dict"]
        assert osd["partition_count"] == 2
        parts.append(sum(t.numel() for t in osd["fp32_flat_groups"]))
    assert sum(parts) == trainable and abs(parts[0] - parts[1]) <= 0.01 * trainable, parts


def _generates(model_dir: Path) -> int:
    """Plain transformers, nothing of DeepSpeed or of ours: load the consolidated model and generate greedily."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(model_dir), AutoModelForCausalLM.from_pretrained(model_dir)
    assert all(torch.isfinite(p).all() and p.numel() > 0 for p in model.parameters()), model_dir
    ids = tok("Calculate 1 + 2.", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
    return out.shape[1] - ids["input_ids"].shape[1]


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory, embedded_model_dir):
    """The pipeline under ZeRO-3 and the same pipeline in one process (float32, as under ZeRO-3 here), started
    together: the second keeps the two cores busy while the first's processes wait on each other."""
    root = tmp_path_factory.mktemp("zero3")
    zero3, one = root / "zero3", root / "one"
    procs = [_start([*PIPELINE, "hardware=cpu_zero3"], zero3), _start([*PIPELINE, "hardware.bf16=false"], one)]
    for proc in procs:
        _finish(proc)
    return zero3, one


@pytest.mark.slow
def test_every_stage_ran_under_zero3_with_its_parameters_partitioned(pipelines):
    zero3, _ = pipelines
    summary = json.loads((zero3 / "pipeline" / "summary.json").read_text())
    assert summary["status"] == "complete" and list(summary["stages"]) == ALL_STAGES
    assert {(s["status"], s["device"], s["processes"]) for s in summary["stages"].values()} == {("complete", "cpu", 2)}
    frozen = (zero3 / "frozen_config.yaml").read_text()
    assert "accelerate_config: launch/accelerate/zero3_offload.yaml" in frozen  # hardware=2x4090's file
    script = (zero3 / "launch.sh").read_text()
    assert "export DS_ACCELERATOR=cpu" in script and "--cpu" not in script and "--mixed_precision no" in script
    for stage in TRAINED:
        checkpoint = checkpoints(zero3 / stage)[0]  # the newest
        full = sum(p.numel() for p in load_file(zero3 / stage / "model" / "model.safetensors").values())
        _assert_zero3_partitioned(checkpoint, full)
        # ... and the model the stage hands on is the consolidated one, of full shapes
        assert full > 0 and _manifest(zero3, stage)["status"] == "complete", stage


@pytest.mark.slow
def test_each_stage_wrote_what_the_one_process_run_writes(pipelines):
    zero3, one = pipelines
    names = lambda run: {p.name for p in run.iterdir()}  # noqa: E731
    assert names(zero3) == names(one) | {"frozen_config.yaml", "launch.sh"}  # a launched run's own two files
    for stage in ALL_STAGES:
        launched, alone = _files(zero3 / stage), _files(one / stage)
        outside = lambda files: {f for f in files if not f.startswith("checkpoint-")}  # noqa: E731
        assert outside(launched) == outside(alone), stage
        for checkpoint in {f.split("/")[0] for f in alone if f.startswith("checkpoint-")}:
            step = checkpoint.split("-")[1]
            ours = {f.split("/", 1)[1] for f in launched if f.startswith(f"{checkpoint}/")}
            theirs = {f.split("/", 1)[1] for f in alone if f.startswith(f"{checkpoint}/")}
            assert ours == theirs - ONE_PROCESS_ONLY | {f.format(step=step) for f in DEEPSPEED_ONLY}, checkpoint
    for stage in TRAINED:
        config = lambda run: json.loads((run / stage / "model" / "config.json").read_text())  # noqa: E731
        assert config(zero3) == config(one), stage
        assert _shapes(zero3 / stage / "model") == _shapes(one / stage / "model"), stage

    def schema(run, stage):  # the keys of each row, and of each message of a conversation
        return {(tuple(sorted(r)), tuple(tuple(sorted(m)) for m in r.get("messages", [])))
                for r in _rows(run / stage / "dataset.jsonl")}

    for stage in DATASETS:
        assert schema(zero3, stage) == schema(one, stage) and schema(zero3, stage), stage


@pytest.mark.slow
def test_every_consolidated_model_loads_with_plain_transformers_and_generates(pipelines):
    zero3, _ = pipelines
    for stage in CAUSAL:
        assert _generates(zero3 / stage / "model") >= 1, stage
    # the student is the distill stage's own (half-width) architecture, not the teacher's
    assert json.loads((zero3 / "distill" / "model" / "config.json").read_text())["hidden_size"] == 16
    from transformers import AutoModelForSequenceClassification

    scorer = AutoModelForSequenceClassification.from_pretrained(zero3 / "reward_model" / "model")
    assert scorer.config.num_labels == 1 and all(torch.isfinite(p).all() for p in scorer.parameters())


@pytest.mark.slow
def test_align_scored_general_prompts_with_the_reward_model_inside_the_zero3_trainer(pipelines):
    zero3, _ = pipelines
    align = _manifest(zero3, "align")
    assert align["inputs"]["reward_model"] == str(zero3 / "reward_model" / "model")
    (step,) = [r for r in _rows(zero3 / "align" / "metrics.jsonl") if "reward" in r]
    # scored on the general rows: a number, not the None of a step that had none of them
    assert isinstance(step["rewards/reward_model/mean"], float) and step["rewards/reward_model/errors"] == 0
    rm = _manifest(zero3, "reward_model")["metrics"]["pair_accuracy"]
    # before training, the pairs were scored with the whole (gathered) model: the same scores as in one process
    assert rm["before"] == _manifest(pipelines[1], "reward_model")["metrics"]["pair_accuracy"]["before"]


# ------------------------------------------------------------------------------------------ kill -9, then resume
KILLED = ["model=tiny_random", "tracking=none", "+reward.test_length.weight=1", "dataset.train_size=8",
          "dataset.test_size=4", *(f"stage.trainer.{k}={v}" for k, v in R1_ZERO.items()), "hardware=cpu_zero3"]


def _kill_everything(proc: subprocess.Popen) -> None:
    """SIGKILL to every process of the run at once (the CLI, accelerate's launcher, the ranks it started in their
    own sessions, their helpers), as when the machine loses it: nobody cleans up."""
    tree = [proc.pid] + [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
    for pid in tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.wait(timeout=60) == -signal.SIGKILL
    deadline = time.monotonic() + 30  # the ranks, orphaned, are reaped by init
    while [pid for pid in tree[1:] if psutil.pid_exists(pid)] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in tree[1:] if psutil.pid_exists(pid)], "a process of the killed run lives on"


def _steps(stage_dir: Path) -> list[dict]:
    return [r for r in _rows(stage_dir / "metrics.jsonl") if "reward" in r]


@pytest.mark.slow
def test_killed_mid_step_then_resumed_from_deepspeeds_checkpoint_ends_as_the_uninterrupted_run(pipelines, tmp_path):
    uninterrupted = pipelines[0] / "r1_zero"
    run_dir = tmp_path / "killed"
    out = run_dir / "r1_zero"
    proc = _start(KILLED, run_dir)
    deadline = time.monotonic() + 600
    while not any(r["step"] >= 3 for r in _steps(out)):  # step 3 logged: the ranks are in step 4
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before step 3"
        time.sleep(0.05)
    _kill_everything(proc)
    assert [r["step"] for r in _steps(out)][-1] == 3 and not (out / "checkpoint-4").exists()
    full = sum(t.numel() for t in load_file(uninterrupted / "model" / "model.safetensors").values())
    _assert_zero3_partitioned(out / "checkpoint-2", full)  # what the resumed run starts from

    _finish(_start([*KILLED, "run.resume=true"], run_dir, log_name="resume.log"))
    assert f"resuming from {out / 'checkpoint-2'}" in (out / "log.txt").read_text()
    # the same stage as the pipeline's r1_zero, so its metrics are the uninterrupted run's
    same = lambda m: {k: v for k, v in m["config"].items() if k != "run"}  # noqa: E731
    assert same(_manifest(run_dir, "r1_zero")) == same(_manifest(pipelines[0], "r1_zero"))
    want, got = _steps(uninterrupted), _steps(out)
    assert [r["step"] for r in got] == [r["step"] for r in want] == [1, 2, 3, 4]  # each step logged once
    keys = ["loss", "grad_norm", "learning_rate", "reward", "reward_std", "entropy", "rewards/test_length/mean"]
    for w, g in zip(want, got):
        assert {k: g[k] for k in keys} == pytest.approx({k: w[k] for k in keys}, rel=1e-6, abs=1e-9), w["step"]
    assert all(w["grad_norm"] > 0 for w in want)  # every step moved the weights: equal metrics mean something
    # The weights: equal up to the last float bits, not bit for bit. After a load DeepSpeed's CPU Adam computes its
    # bias correction as beta ** step where the uninterrupted run multiplied beta step by step (deepspeed 0.19.8,
    # csrc/includes/cpu_adam.h IncrementStep; DeepSpeedCPUAdam alone, saved and loaded after 2 of 4 steps, ends
    # 1.8e-7 away from the run without the load). Here at most 4.9e-6, against steps 3-4 moving weights by 2e-2.
    trained, expected = (load_file(run / "model" / "model.safetensors") for run in (out, uninterrupted))
    at_2 = load_file(uninterrupted / "checkpoint-2" / "model.safetensors")
    assert trained.keys() == expected.keys()
    assert max((expected[k] - at_2[k]).abs().max() for k in expected) > 5e-3
    for k in expected:
        torch.testing.assert_close(trained[k], expected[k], rtol=0, atol=1e-5, msg=k)


# ------------------------------------------------------------------- two machines, as Slurm starts them, with LoRA
# r1_zero (GRPO) then cold_start then sft1 (SFT), LoRA on both training stages; the test reward and a large rate, so
# that the one GRPO step moves the adapter.
MULTI_NODE = [*TINY_PIPELINE, "tracking=none", "stage.order=[r1_zero,cold_start,sft1]", "model.lora.enabled=true",
              "model.lora.r=4", "model.lora.alpha=8", "model.lora.dropout=0.0", "+reward.test_length.weight=1",
              *(f"stage.r1_zero.trainer.{k}={v}" for k, v in {**R1_ZERO, "max_steps": 1, "save_steps": 1,
                                                                "learning_rate": 5e-2}.items()),
              "stage.sft1.trainer.max_steps=2", "stage.sft1.trainer.per_device_train_batch_size=2",
              "stage.sft1.trainer.gradient_accumulation_steps=1",
              "hardware=cpu_zero3", "hardware.num_machines=2"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _merged_is_base_plus_adapter(stage_dir: Path, base: dict, scale: float) -> None:
    """`model/` is exactly base + scale * B @ A for every adapted layer, the rest of the base untouched, and the
    adapter trained (B starts at zero)."""
    adapter = load_file(stage_dir / "adapter" / "adapter_model.safetensors")
    assert any(v.abs().sum() > 0 for k, v in adapter.items() if "lora_B" in k), f"{stage_dir.name}: B stayed 0"
    merged = load_file(stage_dir / "model" / "model.safetensors")
    assert merged.keys() == base.keys()
    for name, weight in merged.items():
        key = "base_model.model." + name.removesuffix(".weight")
        if f"{key}.lora_A.weight" in adapter:
            delta = scale * adapter[f"{key}.lora_B.weight"] @ adapter[f"{key}.lora_A.weight"]
            torch.testing.assert_close(weight, base[name] + delta, rtol=1e-5, atol=1e-6, msg=name)
        else:
            assert torch.equal(weight, base[name]), name


@pytest.mark.slow
def test_two_machines_started_as_slurm_starts_them_train_lora_grpo_and_sft(tmp_path, embedded_model_dir):
    """Machine 0 is the CLI (it composes, freezes, writes launch.sh and slurm.sbatch, runs launch.sh); machine 1 runs
    that launch.sh with MACHINE_RANK=1, as slurm.sbatch's srun does on the second node. One process each, here."""
    run_dir = tmp_path / "run"
    env = {**_env(), "MAIN_PROCESS_IP": "127.0.0.1", "MAIN_PROCESS_PORT": str(_free_port())}
    machine0 = _start(MULTI_NODE, run_dir, env=env)
    deadline = time.monotonic() + 300
    while not (run_dir / "slurm.sbatch").is_file():  # written after launch.sh: launch.sh is whole
        assert machine0.poll() is None and time.monotonic() < deadline, machine0.log.read_text()[-3000:]
        time.sleep(0.2)
    log1 = tmp_path / "machine1.log"
    with open(log1, "w") as out:
        machine1 = subprocess.Popen(["bash", str(run_dir / "launch.sh")], env={**env, "MACHINE_RANK": "1"},
                                    cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    assert machine1.wait(timeout=900) == 0, log1.read_text()[-6000:]
    _finish(machine0)

    launch_sh = run_dir / "launch.sh"
    assert f"bash \"$0\"' {launch_sh}" in (run_dir / "slurm.sbatch").read_text()  # what srun runs on every node
    script = launch_sh.read_text()
    assert '--num_processes 2 --num_machines 2' in script and '--machine_rank "${MACHINE_RANK:-0}"' in script
    summary = json.loads((run_dir / "pipeline" / "summary.json").read_text())
    assert {s: (r["status"], r["processes"]) for s, r in summary["stages"].items()} == {
        s: ("complete", 2) for s in ("r1_zero", "cold_start", "sft1")}

    from r1pipeline.models import load_model

    base = {name: p.detach() for name, p in load_model(compose_cfg(["model=tiny_random"]).model,
                                                       str(embedded_model_dir), True, random_init=True).named_parameters()}
    for stage in ("r1_zero", "sft1"):
        assert _manifest(run_dir, stage)["inputs"]["model"] == str(embedded_model_dir)
        adapter = sum(t.numel() for t in load_file(run_dir / stage / "adapter" / "adapter_model.safetensors").values())
        _assert_zero3_partitioned(checkpoints(run_dir / stage)[0], adapter)  # only the adapter trains, split in two
        _merged_is_base_plus_adapter(run_dir / stage, base, scale=8 / 4)
        assert _generates(run_dir / stage / "model") >= 1, stage


# ------------------------------------------------------------------------------------ in one process, no launch
def test_models_built_inside_a_zero3_stage_are_whole_and_the_stage_keeps_its_config(embedded_model_dir):
    """What the stages rely on while a ZeRO-3 trainer's config is registered: a random model is drawn whole (the
    one-process weights of its seed), a reward model's scorer loads whole, and the trainer's config stands again
    afterwards. Also the tripwire of models.whole_models, which reads transformers' registered config."""
    from transformers.integrations import HfDeepSpeedConfig, is_deepspeed_zero3_enabled, unset_hf_deepspeed_config
    from transformers.integrations import deepspeed as hf_deepspeed

    from r1pipeline.models import load_model, whole_models

    assert hasattr(hf_deepspeed, "_hf_deepspeed_config_weak_ref"), "transformers moved it: update models.whole_models"
    model_cfg = compose_cfg(["model=tiny_random"]).model
    alone = dict(load_model(model_cfg, str(embedded_model_dir), True, random_init=True).named_parameters())
    registered = HfDeepSpeedConfig({"zero_optimization": {"stage": 3}, "train_micro_batch_size_per_gpu": 1})
    try:
        assert is_deepspeed_zero3_enabled()  # as while a ZeRO-3 trainer's arguments exist
        with whole_models():
            assert not is_deepspeed_zero3_enabled()
        assert is_deepspeed_zero3_enabled()
        drawn = dict(load_model(model_cfg, str(embedded_model_dir), True, random_init=True).named_parameters())
        assert is_deepspeed_zero3_enabled()
    finally:
        unset_hf_deepspeed_config()
    assert drawn.keys() == alone.keys() and all(torch.equal(drawn[k], alone[k]) for k in alone)
    assert not any(hasattr(p, "ds_id") for p in drawn.values())  # not partitioned: DeepSpeed does that at train()
    del registered
