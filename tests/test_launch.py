"""Launch plans for every hardware profile, the headline command on a machine without GPUs, and the frozen-config
hand-off to launched workers (run for real on CPU under `accelerate launch` with two ranks)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import TINY, compose_cfg, reload_in_fresh_process
from r1pipeline.errors import ConfigError
from r1pipeline.launcher import FROZEN_CONFIG, build_plan, check, check_software, freeze, needs_launch
from r1pipeline.worker import load_frozen

REPO = Path(__file__).resolve().parent.parent


def _arg(argv, flag):
    return argv[argv.index(flag) + 1]


@pytest.mark.parametrize(
    "profile,processes,machines,offload,launcher_flag",
    [
        # the headline profile: 2 GPUs, ZeRO-3, params and optimizer state on CPU
        ("2x4090", 2, 1, "cpu", None),
        # one big machine: ZeRO-3 without offload
        ("8xh100", 8, 1, "none", None),
        # two machines; rank and address come from the environment when launch.sh runs
        ("2x8xh100", 16, 2, "none", None),
        # one GPU too small for the model (the setup verified on one H100)
        ("1xgpu_offload", 1, 1, "cpu", None),
    ],
)
def test_deepspeed_profiles_build_the_right_plan(tmp_path, profile, processes, machines, offload, launcher_flag):
    cfg = compose_cfg([f"hardware={profile}"])
    assert needs_launch(cfg.hardware)
    plan = build_plan(cfg, tmp_path)
    argv = plan.argv
    assert argv[1:4] == ["-m", "accelerate.commands.launch", "--config_file"]
    assert Path(_arg(argv, "--config_file")).is_file() and Path(_arg(argv, "--config_file")).parent == REPO / "launch/accelerate"
    assert (_arg(argv, "--num_processes"), _arg(argv, "--num_machines"), _arg(argv, "--mixed_precision")) == (
        str(processes), str(machines), "bf16")
    assert argv[-3:] == ["--module", "r1pipeline.worker", str(tmp_path.resolve() / FROZEN_CONFIG)]
    assert "--cpu" not in argv and "--multi_gpu" not in argv  # DeepSpeed's own launcher starts the ranks
    ds = plan.accelerate["deepspeed_config"]
    assert plan.accelerate["distributed_type"] == "DEEPSPEED" and plan.uses_deepspeed
    assert (ds["zero_stage"], ds["offload_param_device"], ds["offload_optimizer_device"]) == (3, offload, offload)
    # consolidated 16-bit weights on save: trainer.save_model writes a checkpoint that loads without DeepSpeed
    assert ds["zero3_save_16bit_model"] is True
    assert (plan.accelerate["num_processes"], plan.accelerate["mixed_precision"]) == (processes, "bf16")
    if machines > 1:
        assert _arg(argv, "--machine_rank") == "${MACHINE_RANK:-0}"
        assert _arg(argv, "--main_process_ip").startswith("${MAIN_PROCESS_IP:?")
        assert '"${MACHINE_RANK:-0}"' in plan.script()
    else:
        assert "--machine_rank" not in argv
    assert cfg.hardware.bf16 and cfg.hardware.gradient_checkpointing and not cfg.hardware.use_cpu
    script = tmp_path / "launch.sh"
    script.write_text(plan.script())
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0  # valid shell


def test_cpu_zero3_is_the_2x4090_launch_on_deepspeeds_cpu_accelerator(tmp_path):
    """The same accelerate config file and DeepSpeed setup; only the device differs: DeepSpeed's launcher (no --cpu,
    which would make accelerate run plain CPU processes), DS_ACCELERATOR=cpu exported by launch.sh, float32."""
    gpu, cpu = (build_plan(compose_cfg([f"hardware={p}"]), tmp_path / p) for p in ("2x4090", "cpu_zero3"))
    assert cpu.config_file == gpu.config_file == REPO / "launch/accelerate/zero3_offload.yaml"
    assert cpu.accelerate["deepspeed_config"] == gpu.accelerate["deepspeed_config"] and cpu.uses_deepspeed
    differs = {k for k in gpu.accelerate if gpu.accelerate[k] != cpu.accelerate[k]}
    assert differs == {"use_cpu", "mixed_precision"} and cpu.accelerate["use_cpu"] is True
    assert "--cpu" not in cpu.argv and "--multi_gpu" not in cpu.argv and _arg(cpu.argv, "--num_processes") == "2"
    assert _arg(cpu.argv, "--mixed_precision") == "no" and cpu.env == {"DS_ACCELERATOR": "cpu"} and gpu.env == {}
    assert "export DS_ACCELERATOR=cpu" in cpu.script().splitlines() and "DS_ACCELERATOR" not in gpu.script()
    assert cpu.command_line().startswith("DS_ACCELERATOR=cpu ")


@pytest.mark.slow  # converts the embedded model into a fresh cache (~20 s)
def test_a_rank_that_cannot_save_the_embedded_model_leaves_no_cache_behind(tmp_path, monkeypatch):
    """In a process group transformers saves a model on rank 0 only: a later rank converting the embedded model
    would cache a tokenizer without weights, which every later run on the machine then failed to load (seen with
    2 ranks and an empty cache). Ranks now convert before they join the group (worker.py); should one ever convert
    inside it, it fails and caches nothing."""
    from transformers.distributed import mixin

    from r1pipeline.models import materialize_embedded

    monkeypatch.setenv("R1PIPELINE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(mixin, "_is_torch_distributed_initialized", lambda: True)
    monkeypatch.setattr(mixin, "_get_torch_distributed_rank", lambda: 1)
    with pytest.raises(RuntimeError, match=r"save_pretrained wrote no weights in this process"):
        materialize_embedded("SmolLM2-135M-Instruct")
    assert list((tmp_path / "cache" / "embedded").iterdir()) == []


def test_a_launched_rank_converts_the_embedded_models_before_it_joins_the_process_group(tmp_path, monkeypatch):
    from r1pipeline import worker

    order = []
    monkeypatch.setattr("r1pipeline.models.materialize_embedded", lambda name: order.append(("convert", name)))
    monkeypatch.setattr(worker, "init", lambda hw: order.append(("join", hw.name)) or PartialStateStub())
    monkeypatch.setattr("r1pipeline.config.check_devices", lambda cfg: None)
    monkeypatch.setattr("r1pipeline.stages.dispatch", lambda cfg: order.append(("run", cfg.stage.name)))
    cfg = compose_cfg(["stage=distill", "hardware=cpu_accelerate", "hardware.num_processes=2"])
    worker.main([str(freeze(cfg, tmp_path / "run"))])
    # the model group and distill's student (another embedded name would be converted too), then the group
    assert order == [("convert", "SmolLM2-135M-Instruct"), ("join", "cpu_accelerate"), ("run", "distill")]


class PartialStateStub:
    is_main_process, process_index = True, 0


@pytest.mark.parametrize("profile,launched", [("cpu", False), ("1xgpu", False), ("cpu_accelerate", True)])
def test_single_process_profiles_run_in_process(tmp_path, profile, launched):
    cfg = compose_cfg([f"hardware={profile}"])
    assert needs_launch(cfg.hardware) is launched


def test_cpu_ranks_use_the_torchrun_launcher(tmp_path):
    cfg = compose_cfg(["hardware=cpu_accelerate", "hardware.num_processes=2", "hardware.bf16=false"])
    plan = build_plan(cfg, tmp_path)
    assert "--multi_gpu" in plan.argv and "--cpu" not in plan.argv and not plan.uses_deepspeed
    assert _arg(plan.argv, "--mixed_precision") == "no"
    bf16 = build_plan(compose_cfg(["hardware=cpu_accelerate", "hardware.num_processes=2", "hardware.bf16=true"]),
                      tmp_path / "bf16")
    assert _arg(bf16.argv, "--mixed_precision") == "bf16"  # autocast on the CPU ranks too, as in one process


def test_several_gpu_processes_without_a_config_file_use_ddp(tmp_path):
    plan = build_plan(compose_cfg(["hardware=1xgpu", "hardware.num_processes=4"]), tmp_path)
    assert plan.config_file.name == "ddp.yaml" and plan.accelerate["distributed_type"] == "MULTI_GPU"
    assert (_arg(plan.argv, "--num_processes"), _arg(plan.argv, "--mixed_precision")) == ("4", "bf16")
    assert "--multi_gpu" in plan.argv and "--cpu" not in plan.argv and plan.accelerate["use_cpu"] is False


def test_uneven_multi_node_split_and_missing_deepspeed_are_config_errors():
    with pytest.raises(ConfigError, match=r"hardware.num_processes: 15 processes do not split evenly"):
        check(compose_cfg(["hardware=2x8xh100", "hardware.num_processes=15"]))
    with pytest.raises(ConfigError, match=r"hardware.accelerate_config: .*does not exist"):
        check_software(compose_cfg(["hardware=2x4090", "hardware.accelerate_config=launch/nope.yaml"]))
    import importlib.util

    if importlib.util.find_spec("deepspeed") is None:
        with pytest.raises(ConfigError, match=r"hardware=2x4090: needs DeepSpeed.*r1pipeline\[deepspeed\]"):
            check_software(compose_cfg(["hardware=2x4090"]))


@pytest.mark.skipif(torch.cuda.device_count() >= 2, reason="this machine has the GPUs; the command would train")
def test_headline_command_without_gpus_shows_the_plan_and_fails_fast(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-m", "r1pipeline", "stage=r1_zero", "hardware=2x4090"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode == 2, out[-3000:]
    have = torch.cuda.device_count()
    instead = "hardware=cpu" if have == 0 else "hardware=1xgpu"
    assert f"hardware=2x4090: needs 2 CUDA GPUs, this machine has {have}; use {instead}" in out
    assert "launch plan: " in out and "--config_file" in out and "zero3_offload.yaml" in out
    errors = [line for line in out.splitlines() if "ERROR" in line]
    assert len(errors) == 1, errors  # one line, no traceback
    assert "Traceback" not in out
    # nothing trained, nothing left behind: not a file under the working directory (Hydra's own are removed)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_worker_refuses_a_frozen_config_of_another_run_dir(tmp_path):
    cfg = compose_cfg(TINY, run_dir=tmp_path / "a")
    frozen = freeze(cfg, tmp_path / "a")
    assert load_frozen(frozen).run.dir == str((tmp_path / "a").resolve())
    (tmp_path / "b").mkdir()
    moved = tmp_path / "b" / FROZEN_CONFIG
    moved.write_text(frozen.read_text())
    with pytest.raises(ConfigError, match=r"run.dir: the frozen config in .*/b names another run directory"):
        load_frozen(moved)


def test_launched_stage_runs_two_cpu_ranks_on_one_frozen_config(tmp_path, embedded_model_dir):
    """The whole launched path on CPU: Hydra entry point -> frozen config + launch.sh -> accelerate launch -> 2 workers."""
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "r1pipeline", *TINY, "hardware=cpu_accelerate", "hardware.num_processes=2",
           "tracking=none", f"run.dir={run_dir}"]
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]

    frozen = yaml.safe_load((run_dir / FROZEN_CONFIG).read_text())
    assert frozen["run"]["dir"] == str(run_dir.resolve()) and frozen["hardware"]["num_processes"] == 2
    script = (run_dir / "launch.sh").read_text()
    assert f"--module r1pipeline.worker {run_dir.resolve() / FROZEN_CONFIG}" in script and "--num_processes 2" in script
    out = run_dir / "r1_zero"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["steps"] == 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["run"]["dir"] == str(run_dir.resolve())
    # both ranks trained (each saved its RNG state into the shared checkpoint); rank 0 alone wrote the log
    assert sorted(p.name for p in (out / "checkpoint-2").glob("rng_state_*.pth")) == ["rng_state_0.pth", "rng_state_1.pth"]
    log_lines = (out / "log.txt").read_text().splitlines()
    assert sum("GRPO r1_zero:" in line for line in log_lines) == 1, log_lines
    assert [json.loads(r)["step"] for r in (out / "metrics.jsonl").read_text().splitlines() if '"reward"' in r] == [1, 2]

    # The saved model is one consolidated checkpoint: it loads in a fresh process (no DeepSpeed, no accelerate),
    # with the source model's parameter count and no empty tensors.
    from r1pipeline.models import load_model

    source = load_model(compose_cfg(TINY).model, str(embedded_model_dir), True, random_init=True)
    loaded = reload_in_fresh_process(out / "model")
    assert (loaded["params"], loaded["empty"]) == (source.num_parameters(), []) and loaded["new_tokens"] >= 1


def _stand_ins(bin_dir: Path) -> Path:
    """Stand-ins for Slurm's srun (one task per node, each with its SLURM_NODEID), scontrol (the allocation's two
    hostnames) and sbatch (prints a job id, records its arguments), and an interpreter that records the arguments
    `accelerate launch` would have received on each node."""
    bin_dir.mkdir()
    scripts = {
        "srun": 'nodes=1\nwhile [[ $1 == --* ]]; do [[ $1 == --nodes=* ]] && nodes=${1#--nodes=}; shift; done\n'
                'for ((i = 0; i < nodes; i++)); do SLURM_NODEID=$i SLURM_PROCID=$i "$@" || exit $?; done\n',
        "scontrol": '[[ "$1 $2" == "show hostnames" ]] && printf "gpu-07\\ngpu-08\\n"\n',
        "sbatch": 'printf "%s\\n" "$@" > "$RECORD_DIR/sbatch.args"; echo 4242\n',
        "python": 'printf "%s\\n" "$@" > "$RECORD_DIR/node-$SLURM_NODEID.args"\n',
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text("#!/usr/bin/env bash\n" + body)
        (bin_dir / name).chmod(0o755)
    return bin_dir


def test_two_node_sbatch_starts_accelerate_on_every_node_with_its_machine_rank(tmp_path, monkeypatch):
    from r1pipeline.launcher import write_scripts

    bin_dir = _stand_ins(tmp_path / "bin")
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))  # the plan's interpreter records its arguments
    cfg = compose_cfg(["hardware=2x8xh100", "stage=reasoning_rl", 'hardware.sbatch_options=["--partition=gpu"]'])
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    scripts = write_scripts(cfg, build_plan(cfg, run_dir))
    sbatch = run_dir / "slurm.sbatch"
    assert scripts == [run_dir / "launch.sh", sbatch]
    assert subprocess.run(["bash", "-n", str(sbatch)]).returncode == 0
    text = sbatch.read_text()
    directives = [line.split(" ", 1)[1] for line in text.splitlines() if line.startswith("#SBATCH")]
    assert directives == ["--job-name=r1pipeline-reasoning_rl", "--nodes=2", "--ntasks-per-node=1",
                          f"--output={run_dir / 'slurm-%j.out'}", "--gpus-per-node=8", "--partition=gpu"]

    # Run it as Slurm would on the allocation's first node: srun starts launch.sh once per node.
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "RECORD_DIR": str(tmp_path),
           "SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "gpu-[07-08]"}
    res = subprocess.run(["bash", str(sbatch)], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    common = ["-m", "accelerate.commands.launch", "--config_file", str(REPO / "launch/accelerate/zero3_multinode.yaml"),
              "--num_processes", "16", "--num_machines", "2", "--mixed_precision", "bf16"]
    for node in (0, 1):
        argv = (tmp_path / f"node-{node}.args").read_text().splitlines()
        assert argv == [*common, "--machine_rank", str(node), "--main_process_ip", "gpu-07",
                        "--main_process_port", str(29500 + 4242 % 1000),
                        "--module", "r1pipeline.worker", str(run_dir.resolve() / FROZEN_CONFIG)], node


def test_slurm_launcher_submits_the_run_instead_of_starting_it_here(tmp_path, monkeypatch):
    from r1pipeline.cli import launch_stage as launch

    overrides = [*TINY, "hardware=cpu_accelerate", "hardware.num_machines=2", "hardware.num_processes=2",
                 "hardware.launcher=slurm", "tracking=none"]
    with pytest.raises(ConfigError, match=r"hardware.launcher=slurm: sbatch is not on PATH"):
        launch(compose_cfg(overrides, run_dir=tmp_path / "no-slurm"))
    assert not (tmp_path / "no-slurm").exists()

    bin_dir = _stand_ins(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("RECORD_DIR", str(tmp_path))
    run_dir = tmp_path / "run"
    result = launch(compose_cfg(overrides, run_dir=run_dir))
    assert result == {"stage": "r1_zero", "status": "submitted", "job": "4242", "sbatch": str(run_dir / "slurm.sbatch")}
    assert (tmp_path / "sbatch.args").read_text().splitlines() == ["--parsable", str(run_dir / "slurm.sbatch")]
    assert (run_dir / FROZEN_CONFIG).is_file() and not (run_dir / "r1_zero").exists()  # nothing ran here
    assert "--gpus-per-node" not in (run_dir / "slurm.sbatch").read_text()  # CPU processes
    with pytest.raises(ConfigError, match=r"hardware.launcher: slurm starts `accelerate launch` through sbatch"):
        launch(compose_cfg([*TINY, "hardware.launcher=slurm"], run_dir=tmp_path / "in-process"))


def test_cpu_profile_uses_bf16_exactly_where_the_cpu_computes_it_natively():
    """hardware=cpu resolves `bf16` from the CPU's flags: avx512_bf16 / amx_bf16 -> autocast (about 2x faster training
    steps on such a CPU), anything else -> float32 (emulated bf16 would be slower); the frozen config says which."""
    from r1pipeline.sweep import cpu_has_native_bf16

    assert cpu_has_native_bf16("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 avx512_vnni\n")
    assert cpu_has_native_bf16("flags\t\t: fpu amx_tile amx_bf16\n")
    assert not cpu_has_native_bf16("flags\t\t: fpu sse avx2 avx512f\n")
    assert not cpu_has_native_bf16("")
    here = compose_cfg().hardware.bf16
    assert here is cpu_has_native_bf16()
    assert compose_cfg(["hardware.bf16=false"]).hardware.bf16 is False


# ------------------------------------------------------------------------------------------------------ dry run
@pytest.fixture
def nothing_may_start(monkeypatch):
    """Fails the test if anything starts a process or loads a model, a tokenizer or data, until the test calls the
    function this returns (then it may check the files with processes of its own)."""
    import datasets
    import transformers

    from r1pipeline import data, models

    guard, popen = {"on": True}, subprocess.Popen

    def refuse(what):
        def fail(*args, **kwargs):
            if guard["on"]:
                raise AssertionError(f"a dry run {what}")
            return popen(*args, **kwargs)
        return fail

    monkeypatch.setattr(subprocess, "Popen", refuse("started a process"))
    monkeypatch.setattr(os, "execv", refuse("replaced its process"))
    for name in ("load_model", "load_full_model", "load_tokenizer", "materialize_embedded"):
        monkeypatch.setattr(models, name, refuse(f"called models.{name}"))
    monkeypatch.setattr(transformers.PreTrainedModel, "from_pretrained", refuse("loaded a model"))
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_config", refuse("built a model"))
    monkeypatch.setattr(data, "build_dataset", refuse("built the dataset"))
    monkeypatch.setattr(datasets, "load_dataset", refuse("loaded a dataset"))
    return lambda: guard.update(on=False)


@pytest.mark.parametrize("profile,processes,launched", [
    ("1xgpu", 1, False), ("1xgpu_offload", 1, True), ("2x4090", 2, True), ("8xh100", 8, True),
    ("2x8xh100", 16, True),  # two machines: also the Slurm job
    ("cpu", 0, False), ("cpu_accelerate", 0, True), ("cpu_zero3", 0, True),  # CPU profiles: no GPU to skip
])
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the device check is skipped on a machine without GPUs")
def test_dry_run_writes_the_launch_files_prints_the_command_and_starts_nothing(profile, processes, launched, tmp_path,
                                                                                caplog, nothing_may_start):
    from r1pipeline.cli import _dispatch

    run_dir = tmp_path / "run"
    cfg = compose_cfg(["stage=pipeline", "experiment=pipeline_smoke", f"hardware={profile}", "run.dry_run=true"],
                      run_dir=run_dir)
    with caplog.at_level("INFO", logger="r1pipeline"):
        summary = _dispatch(cfg)
    nothing_may_start()  # the dry run is over: `bash -n` below may run
    out = "\n".join(r.getMessage() for r in caplog.records)
    multi_node = profile == "2x8xh100"
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(
        [FROZEN_CONFIG, "launch.sh", *(["slurm.sbatch"] if multi_node else [])])  # and no stage directory
    assert summary["status"] == "dry run" and summary["files"][0] == str(run_dir.resolve() / FROZEN_CONFIG)
    frozen = load_frozen(run_dir / FROZEN_CONFIG)
    assert frozen.hardware.name == profile and frozen.run.dry_run is False  # launch.sh runs it for real
    script = (run_dir / "launch.sh").read_text()
    assert subprocess.run(["bash", "-n", str(run_dir / "launch.sh")]).returncode == 0
    assert ("-m accelerate.commands.launch" in script) is launched
    if not launched:  # one process: the worker on the frozen config, in one process
        assert script.rstrip().endswith(f"-m r1pipeline.worker {run_dir.resolve() / FROZEN_CONFIG}")
    assert f"dry run: command: {summary['command']}" in out
    lines = script.splitlines()  # the printed command is the script's: its exports, then the command it runs
    exports = [line[len("export "):] for line in lines if line.startswith("export ") and "PYTHONPATH" not in line]
    assert " ".join([*exports, lines[-1].removeprefix("exec ")]) == summary["command"]
    assert ("export DS_ACCELERATOR=cpu" in lines) is (profile == "cpu_zero3")
    skipped = (f"skipped here: the CUDA device check (hardware={profile} needs {processes // (2 if multi_node else 1)} "
               f"CUDA GPU(s) per machine, this machine has 0")
    assert (skipped in out) is bool(processes)
    assert "stage pipeline: the config is valid" in out and "nothing was started" in out


def test_dry_run_keeps_every_other_check(tmp_path, nothing_may_start):
    from r1pipeline.cli import _dispatch

    with pytest.raises(ConfigError, match=r"stage.trainer.learning_rate: 'abc' is not a number"):
        _dispatch(compose_cfg(["hardware=2x4090", "run.dry_run=true", "stage.trainer.learning_rate=abc"],
                              run_dir=tmp_path / "bad"))
    with pytest.raises(ConfigError, match=r"run.dry_run: 'maybe' must be true"):
        _dispatch(compose_cfg(["run.dry_run=maybe"], run_dir=tmp_path / "bad"))
    (tmp_path / "used" / "r1_zero").mkdir(parents=True)
    (tmp_path / "used" / "r1_zero" / "log.txt").write_text("a run was here")
    with pytest.raises(ConfigError, match=r"run.dir: .*r1_zero is not empty"):
        _dispatch(compose_cfg(["hardware=8xh100", "run.dry_run=true"], run_dir=tmp_path / "used"))
    assert not (tmp_path / "bad").exists() and not (tmp_path / "used" / FROZEN_CONFIG).exists()


@pytest.mark.skipif(torch.cuda.device_count() >= 2, reason="this machine has the GPUs")
def test_dry_run_of_the_two_gpu_preset_on_a_machine_without_gpus(tmp_path):
    """The README's check before renting: the 2 x 4090 preset, composed and validated here, its files written."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}  # offline, as launch/env.sh runs it
    res = subprocess.run([sys.executable, "-m", "r1pipeline", "experiment=mini_r1_countdown", "run.dry_run=true"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode == 0 and "Traceback" not in out, out[-3000:]
    (run_dir,) = {p.parent for p in (tmp_path / "outputs").rglob(FROZEN_CONFIG)}
    assert "hardware=2x4090: 2 process(es) on 1 machine(s) under `accelerate launch` (launch/accelerate/" \
           "zero3_offload.yaml: DeepSpeed ZeRO-3, parameters offloaded to cpu, optimizer state offloaded to cpu)" in out
    assert "skipped here: the CUDA device check (hardware=2x4090 needs 2 CUDA GPU(s) per machine" in out
    assert "whether Qwen/Qwen2.5-3B-Instruct is in this machine's hub cache (HF_HUB_OFFLINE=1" in out
    assert "memory estimate per GPU, hardware=2x4090 (24 GB): model qwen2.5_3b_instruct" in out  # will it fit?
    assert re.search(r"peak: r1_zero, [\d.]+ GB of 24 GB: (fits|tight)", out), out[-3000:]
    assert f"nothing was started; to run it: bash {run_dir / 'launch.sh'}" in out
    frozen = yaml.safe_load((run_dir / FROZEN_CONFIG).read_text())
    assert frozen["stage"]["order"] == ["r1_zero", "eval"] and frozen["model"]["path"] == "Qwen/Qwen2.5-3B-Instruct"
    assert not [p for p in run_dir.iterdir() if p.is_dir() and p.name != ".hydra"]  # no stage ran
