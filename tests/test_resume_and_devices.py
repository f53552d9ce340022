"""Resume after SIGKILL gives exactly the uninterrupted numbers; 1 vs 4 vs 8 devices give the same losses."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from trainer_utils import REPO, TINY_CONFIG, deterministic_records, metrics_records, run_cli

RUN_ARGS = [f"--config={TINY_CONFIG}", "--config.num_train_steps=12", "--config.log_every_steps=1",
            "--config.checkpoint_every_steps=3", "--config.eval_every_steps=6"]


def _checkpoint_steps(workdir):
    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(directory):
        return []
    return sorted(int(name) for name in os.listdir(directory) if name.isdigit())


def _start(workdir):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "at_jax.train", f"--workdir={workdir}", *RUN_ARGS],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _kill_when(process, condition, extra_delay, timeout=300):
    deadline = time.time() + timeout
    while not condition():
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline, "timed out waiting for the run"
        time.sleep(0.02)
    time.sleep(extra_delay)
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    reference = tmp_path / "reference"
    result = run_cli([f"--workdir={reference}", *RUN_ARGS])
    assert result.returncode == 0, result.stderr[-3000:]

    interrupted = tmp_path / "interrupted"
    # Kill 1: mid-training, after the first checkpoint, at an arbitrary moment between log lines.
    process = _start(interrupted)
    _kill_when(process, lambda: len(_checkpoint_steps(interrupted)) >= 1
               and os.path.exists(interrupted / "metrics.jsonl")
               and len(metrics_records(interrupted)) >= 4, extra_delay=0.05)
    assert process.returncode == -signal.SIGKILL
    # Kill 2: as soon as a later checkpoint directory appears (possibly while it is being written).
    seen = set(_checkpoint_steps(interrupted))
    process = _start(interrupted)
    _kill_when(process, lambda: bool(set(os.listdir(interrupted / "checkpoints")) - {str(s) for s in seen}
                                      - {"descriptor"}), extra_delay=0.0)
    # Finish.
    result = run_cli([f"--workdir={interrupted}", *RUN_ARGS])
    assert result.returncode == 0, result.stderr[-3000:]

    assert deterministic_records(interrupted) == deterministic_records(reference)
    summary_a = json.load(open(reference / "summary.json"))
    summary_b = json.load(open(interrupted / "summary.json"))
    assert summary_a["accuracy"] == summary_b["accuracy"]
    assert summary_a["eval_loss"] == summary_b["eval_loss"]


def _losses(workdir):
    records = metrics_records(workdir)
    return (np.array([r["train/total"] for r in records if "train/total" in r]),
            np.array([r["eval/loss"] for r in records if "eval/loss" in r]))


@pytest.fixture(scope="module")
def one_device_losses(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("one_device")
    result = run_cli([f"--workdir={workdir}", *RUN_ARGS, "--config.checkpoint_every_steps=12"], devices=1)
    assert result.returncode == 0, result.stderr[-3000:]
    train, evaluation = _losses(workdir)
    assert len(train) == 12 and len(evaluation) == 2
    return train, evaluation


@pytest.mark.slow
@pytest.mark.parametrize("devices", [8])   # 2 devices: the multi-process tests below
def test_same_losses_on_n_devices(tmp_path, one_device_losses, devices):
    result = run_cli([f"--workdir={tmp_path}", *RUN_ARGS, "--config.checkpoint_every_steps=12"],
                     devices=devices)
    assert result.returncode == 0, result.stderr[-3000:]
    train, evaluation = _losses(tmp_path)
    np.testing.assert_allclose(train, one_device_losses[0], rtol=2e-4)
    np.testing.assert_allclose(evaluation, one_device_losses[1], rtol=2e-4)


@pytest.mark.slow
def test_two_processes_with_jax_distributed_match_one_device(tmp_path, one_device_losses):
    """Multi-host data parallelism on one machine: 2 processes x 2 CPU devices, gloo collectives."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    processes = []
    for process_id in range(2):
        env = dict(os.environ, PYTHONUNBUFFERED="1", JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                   JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(process_id),
                   XLA_FLAGS="--xla_force_host_platform_device_count=2")
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "at_jax.train", f"--workdir={tmp_path}", *RUN_ARGS,
             "--config.checkpoint_every_steps=6"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [process.communicate(timeout=600) for process in processes]
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr[-3000:]
    train, evaluation = _losses(tmp_path)
    np.testing.assert_allclose(train, one_device_losses[0], rtol=2e-4)
    np.testing.assert_allclose(evaluation, one_device_losses[1], rtol=2e-4)
    assert _checkpoint_steps(tmp_path) == [6, 12]


def _slurm_processes(tmp_path, expected_local_devices, extra_args=()):
    """Two processes as SLURM starts them on one node (srun, one task per device pair): SLURM_* variables
    and AT_JAX_DISTRIBUTED=1, so that jax.distributed.initialize() detects the job itself."""
    with socket.socket() as probe:  # JAX derives the coordinator port from the job id: pick a free one
        for port in range(61440 + os.getpid() % 4000, 65536):
            try:
                probe.bind(("127.0.0.1", port))
                break
            except OSError:
                continue
    processes = []
    for task in range(2):
        env = dict(os.environ, PYTHONUNBUFFERED="1", SLURM_JOB_ID=str(port - 61440), SLURM_STEP_NODELIST="localhost",
                   SLURM_NTASKS="2", SLURM_PROCID=str(task), SLURM_LOCALID=str(task), SLURM_STEP_NUM_NODES="1",
                   AT_JAX_DISTRIBUTED="1", AT_JAX_LOCAL_DEVICES=str(expected_local_devices),
                   XLA_FLAGS="--xla_force_host_platform_device_count=2")
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "at_jax.train", f"--workdir={tmp_path}", *RUN_ARGS, *extra_args],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return processes, [process.communicate(timeout=600) for process in processes]


@pytest.mark.slow
def test_simulated_slurm_job_of_two_processes_matches_one_device(tmp_path, one_device_losses):
    processes, outputs = _slurm_processes(tmp_path, 2, ["--config.checkpoint_every_steps=12"])
    for task, (process, (_, stderr)) in enumerate(zip(processes, outputs)):
        assert process.returncode == 0, stderr[-3000:]
        assert f"process {task} of 2: 2 local devices (cpu), 4 devices in all" in stderr
    train, evaluation = _losses(tmp_path)
    np.testing.assert_allclose(train, one_device_losses[0], rtol=2e-4)
    np.testing.assert_allclose(evaluation, one_device_losses[1], rtol=2e-4)


@pytest.mark.slow
def test_simulated_slurm_process_seeing_too_few_devices_stops_in_one_line(tmp_path):
    processes, outputs = _slurm_processes(tmp_path, 3)
    for task, (process, (_, stderr)) in enumerate(zip(processes, outputs)):
        assert process.returncode == 2, stderr[-3000:]
        errors = [line for line in stderr.splitlines() if line.startswith("at_jax: error:")]
        assert errors == [f"at_jax: error: process {task} of 2 sees 2 cpu device(s), 3 expected "
                          "(AT_JAX_LOCAL_DEVICES); check the job's GPU allocation (e.g. --gpus-per-node) and "
                          "CUDA_VISIBLE_DEVICES"], stderr[-2000:]
    assert not os.path.exists(tmp_path / "checkpoints")
