"""Paths through etils.epath: gs:// workdirs with a local fake (no network, no credentials), unknown schemes
refused in one line before anything is written."""
import json
import os

import pytest
from etils import epath
from etils.epath import testing as epath_testing

from at_jax import run_files
from at_jax.errors import PathError
from at_jax.training import multi_run
from at_jax.training.checkpoint import checkpoint_directory
from at_jax.training.metrics import MetricWriter
from at_jax.training.workdir import check_resume_compatible, check_writable, save_config
from trainer_utils import tiny_config

BUCKET = "gs://bucket"


@pytest.fixture
def fake_bucket(tmp_path):
    """gs://bucket/... served from tmp_path/bucket/... for every epath file operation."""
    root = tmp_path / "bucket"
    root.mkdir()

    def local(path):
        text = os.fspath(path)
        return text.replace(BUCKET, str(root), 1) if text.startswith(BUCKET) else text

    def redirect(original, path, *args, **kwargs):
        return original(local(path), *args, **kwargs)

    def redirect_two(original, source, destination, *args, **kwargs):
        return original(local(source), local(destination), *args, **kwargs)

    operations = {name: redirect for name in ("exists", "glob", "isdir", "listdir", "makedirs", "mkdir", "open",
                                              "remove", "rmtree", "stat", "walk")}
    operations.update(rename=redirect_two, replace=redirect_two, copy=redirect_two)
    with epath_testing.mock_epath(**operations):
        yield root


def test_unknown_scheme_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PathError, match="nosuchscheme://"):
        run_files.as_path("nosuchscheme://b/r")
    with pytest.raises(PathError):
        check_writable("nosuchscheme://b/r")
    assert os.listdir(tmp_path) == []


def test_cli_refuses_an_unknown_scheme_and_creates_nothing(tmp_path, cli_error, monkeypatch):
    message = cli_error(["--workdir=nosuchscheme://b/r", "--config=configs/tiny.py"])
    assert "nosuchscheme://" in message
    assert not any(name.startswith("nosuchscheme") for name in os.listdir("."))


def test_a_scheme_whose_backend_is_missing_is_refused_in_one_line():
    def missing_backend(original, path):
        raise ImportError("Please install gcsfs to access Google Storage")

    with epath_testing.mock_epath(exists=missing_backend):
        with pytest.raises(PathError, match="gcsfs"):
            check_writable("gs://bucket/run")


def test_run_files_on_a_bucket(fake_bucket):
    workdir = f"{BUCKET}/run"
    check_writable(workdir)
    run_files.as_path(workdir).mkdir(parents=True, exist_ok=True)
    save_config(workdir, tiny_config().to_dict(), num_classes=10, num_train_examples=64)
    assert json.loads((fake_bucket / "run" / "config.json").read_text())["num_train_examples"] == 64
    assert check_resume_compatible(workdir, tiny_config().to_dict())
    assert run_files.read_json(f"{workdir}/config.json")["num_classes"] == 10
    assert not (fake_bucket / "run" / "config.json.tmp").exists()  # written, then renamed


def test_metrics_on_a_bucket_are_rewritten_not_appended(fake_bucket):
    workdir = f"{BUCKET}/run"
    run_files.as_path(workdir).mkdir(parents=True, exist_ok=True)
    writer = MetricWriter(workdir)
    for step in (1, 2, 3):
        writer.write(step, {"train/total": float(step)})
    assert [r["step"] for r in run_files.read_metrics(f"{workdir}/metrics.jsonl")] == [1, 2, 3]
    resumed = MetricWriter(workdir, resume_step=2)  # lines after the checkpoint go
    resumed.write(3, {"train/total": 30.0})
    records = run_files.read_metrics(fake_bucket / "run" / "metrics.jsonl")
    assert [(r["step"], r["train/total"]) for r in records] == [(1, 1.0), (2, 2.0), (3, 30.0)]


def test_figures_on_a_bucket(fake_bucket):
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    figure = plt.figure(figsize=(1, 1))
    run_files.save_png(figure, f"{BUCKET}/figures/maps.png", dpi=20)
    plt.close(figure)
    assert (fake_bucket / "figures" / "maps.png").read_bytes()[:4] == b"\x89PNG"


def test_urls_are_never_made_local():
    assert str(checkpoint_directory("gs://bucket/run")) == "gs://bucket/run/checkpoints"
    assert isinstance(run_files.as_path("gs://bucket/run"), epath.Path)
    job = multi_run.plan_job(tiny_config(parallel_runs=2), "gs://bucket/job")
    assert job.run_dirs == ("gs://bucket/job/seed_0", "gs://bucket/job/seed_1")
    assert str(run_files.absolute("relative/run")) == os.path.abspath("relative/run")
