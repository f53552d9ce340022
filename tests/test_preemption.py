"""SIGTERM (preemption): a checkpoint at an agreed log step, exit 143, and an identical restart."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from trainer_utils import (REPO, TINY_CONFIG, checkpoint_steps, deterministic_records, metrics_records, run_cli,
                           start_cli, wait_for)

ARGS = [f"--config={TINY_CONFIG}", "--config.num_train_steps=40", "--config.log_every_steps=2",
        "--config.checkpoint_every_steps=20", "--config.eval_every_steps=20"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("reference")
    result = run_cli([f"--workdir={workdir}", *ARGS])
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def _assert_same_as(reference, workdir):
    assert deterministic_records(workdir) == deterministic_records(reference)
    summary_a = json.load(open(os.path.join(reference, "summary.json")))
    summary_b = json.load(open(os.path.join(workdir, "summary.json")))
    assert (summary_a["accuracy"], summary_a["eval_loss"]) == (summary_b["accuracy"], summary_b["eval_loss"])


@pytest.mark.slow
def test_sigterm_saves_at_a_log_step_exits_143_and_resumes_identically(reference, tmp_path):
    workdir = tmp_path / "run"
    process = start_cli([f"--workdir={workdir}", *ARGS])
    wait_for(process, lambda: os.path.exists(workdir / "metrics.jsonl") and len(metrics_records(workdir)) >= 2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 143, stderr[-3000:]
    assert "at_jax: preempted: checkpoint saved at step" in stderr
    saved = checkpoint_steps(workdir)
    last_logged = metrics_records(workdir)[-1]["step"]
    assert saved and saved[-1] == last_logged and last_logged % 2 == 0 and last_logged < 40
    assert not os.path.exists(workdir / "summary.json")
    result = run_cli([f"--workdir={workdir}", *ARGS])
    assert result.returncode == 0, result.stderr[-3000:]
    _assert_same_as(reference, workdir)


@pytest.mark.slow
def test_sigkill_during_the_preemption_save_keeps_the_previous_checkpoint(reference, tmp_path):
    workdir = tmp_path / "run"
    process = start_cli([f"--workdir={workdir}", *ARGS])
    wait_for(process, lambda: 20 in checkpoint_steps(workdir))
    before = checkpoint_steps(workdir)
    process.send_signal(signal.SIGTERM)
    process.send_signal(signal.SIGTERM)  # a second SIGTERM is ignored
    time.sleep(0.05)
    process.send_signal(signal.SIGKILL)  # possibly while the preemption checkpoint is being written
    process.wait()
    assert set(before) <= set(checkpoint_steps(workdir))
    result = run_cli([f"--workdir={workdir}", *ARGS])
    assert result.returncode == 0, result.stderr[-3000:]
    _assert_same_as(reference, workdir)


def _two_processes(workdir, port):
    processes = []
    for process_id in range(2):
        env = dict(os.environ, PYTHONUNBUFFERED="1", JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                   JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(process_id),
                   XLA_FLAGS="--xla_force_host_platform_device_count=2")
        processes.append(subprocess.Popen([sys.executable, "-m", "at_jax.train", f"--workdir={workdir}", *ARGS],
                                          cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                          text=True))
    return processes


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_sigterm_to_one_host_stops_every_host_at_the_same_step(reference, tmp_path):
    """JAX's preemption service: the host that got SIGTERM tells the other; both save the same step."""
    workdir = tmp_path / "run"
    processes = _two_processes(workdir, _free_port())
    wait_for(processes[0], lambda: os.path.exists(workdir / "metrics.jsonl") and len(metrics_records(workdir)) >= 2)
    processes[0].send_signal(signal.SIGTERM)
    outputs = [process.communicate(timeout=300) for process in processes]
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 143, stderr[-3000:]
    saved = checkpoint_steps(workdir)
    assert saved and saved[-1] < 40 and saved[-1] == metrics_records(workdir)[-1]["step"]
    # both hosts logged and saved through that step: the chief wrote the metrics, orbax waits for every host
    mine, theirs = deterministic_records(workdir), deterministic_records(reference)[:len(metrics_records(workdir))]
    assert [record["step"] for record in mine] == [record["step"] for record in theirs]
    for a, b in zip(mine, theirs):  # 2 x 2 devices against 1: the same run up to summation order
        if "train/total" in b:
            assert a["train/total"] == pytest.approx(b["train/total"], rel=1e-3)
