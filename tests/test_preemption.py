"""SIGTERM (preemption): a checkpoint at an agreed log step, exit 143, and an identical restart."""
import json
import os
import signal
import time

import pytest

from trainer_utils import (TINY_CONFIG, checkpoint_steps, deterministic_records, metrics_records, run_cli,
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
