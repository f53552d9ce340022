"""metrics.jsonl writing, truncation on resume, TensorBoard files, progress/ETA, the non-finite guard."""
import io
import json
import os

import pytest

from at_jax.errors import NonFiniteLossError
from at_jax.run_files import read_metrics
from at_jax.training.metrics import MetricWriter, Progress, check_finite


def test_jsonl_and_tensorboard(tmp_path):
    writer = MetricWriter(str(tmp_path), writers="jsonl,tensorboard")
    writer.write(10, {"train/total": 1.5, "train/at": 0.25}, images_per_second=100.0)
    writer.write(20, {"train/total": 1.0})
    writer.close()
    records = read_metrics(os.path.join(tmp_path, "metrics.jsonl"))
    assert records == [{"step": 10, "train/total": 1.5, "train/at": 0.25, "images_per_second": 100.0},
                       {"step": 20, "train/total": 1.0}]
    event_files = os.listdir(tmp_path / "tensorboard")
    assert any(name.startswith("events.out.tfevents") for name in event_files)
    assert all(os.path.getsize(tmp_path / "tensorboard" / name) > 0 for name in event_files)


def test_resume_drops_records_after_restored_step(tmp_path):
    writer = MetricWriter(str(tmp_path))
    for step in (10, 20, 30):
        writer.write(step, {"loss": float(step)})
    with open(tmp_path / "metrics.jsonl", "a") as file:
        file.write('{"step": 40, "lo')  # torn line from a kill mid-write
    MetricWriter(str(tmp_path), resume_step=20)
    assert [r["step"] for r in read_metrics(str(tmp_path / "metrics.jsonl"))] == [10, 20]


def test_check_finite():
    check_finite(1, {"a": 1.0, "b": 0.0})
    with pytest.raises(NonFiniteLossError, match="'b'.*step 7"):
        check_finite(7, {"a": 1.0, "b": float("nan")})
    with pytest.raises(NonFiniteLossError):
        check_finite(7, {"a": float("inf")})


def test_progress_plain_lines_and_eta():
    stream = io.StringIO()
    progress = Progress(total_steps=100, start_step=0, stream=stream, label="demo")
    progress.start_time -= 10.0  # pretend 10 s elapsed for 50 steps -> 10 s left
    line = progress.update(50, "loss 1.0")
    assert line.startswith("demo step 50/100 (50.0%) ETA 00:1")
    assert stream.getvalue().endswith("loss 1.0\n")
    assert 9.0 < progress.eta_seconds(50) < 11.0
