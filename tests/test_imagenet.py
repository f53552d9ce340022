"""ImageNet (paper Table 5) through ``python -m at_jax.train`` on generated data: a ResNet-18 student with AT
from a ResNet-34 teacher, streamed from a JPEG folder and from TFDS mock imagenet2012; SIGKILL mid-epoch
resumes with the same batches; two processes read disjoint parts and match one process; bad input stops in
one line."""
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import torchvision_reference as reference
from at_jax.training.torchvision_import import write_imported_run
from image_data import write_image_folder
from trainer_utils import REPO, checkpoint_steps, deterministic_records, metrics_records, run_cli, start_cli, wait_for

FIXTURE = np.load(pathlib.Path(__file__).parent / "fixtures" / "torchvision_resnets.npz")
CLASSES = tuple(f"n{index:08d}" for index in range(10))
SMALL = ["--config.dataset.image_size=32", "--config.batch_size=4", "--config.num_train_steps=2",
         "--config.log_every_steps=1", "--config.checkpoint_every_steps=2", "--config.eval_batch_size=8",
         "--config.compute_dtype=float32", "--config.progress=False", "--config.metrics.writers=jsonl",
         "--config.optimizer.learning_rate=1e-4"]   # the stand-in weights give logits of ~1e3: small steps
# A small model for the runs that are about the pipeline rather than the networks.
PIPELINE = ["--config=configs/imagenet.py", "--config.model=wrn-10-1", "--config.compute_dtype=float32",
            "--config.dataset.image_size=16", "--config.batch_size=6", "--config.num_train_steps=12",
            "--config.log_every_steps=1", "--config.checkpoint_every_steps=3", "--config.eval_every_steps=6",
            "--config.eval_batch_size=6", "--config.progress=False", "--config.metrics.writers=jsonl",
            "--config.optimizer.learning_rate=0.05"]


def imported_resnet34(workdir, num_classes):
    """A ResNet-34 run in torchvision's layout (stand-in weights) with a ``num_classes`` head."""
    layout = [(key, tuple(shape)) for key, shape in json.loads(str(FIXTURE["resnet34/layout"]))]
    layout = [(key, (num_classes,) + shape[1:] if key.startswith("fc.") else shape) for key, shape in layout]
    write_imported_run("resnet34", reference.state_dict(layout), str(workdir))
    return str(workdir)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """10 classes (ImageNet-style synset names), 3 train and 1 val JPEG each, odd formats among them."""
    return write_image_folder(tmp_path_factory.mktemp("imagenet_folder"), classes=CLASSES, train_per_class=3,
                              val_per_class=1, size_range=(20, 80))


@pytest.fixture(scope="module")
def pipeline_folder(tmp_path_factory):
    """3 classes x 10 train images: 5 steps of 6 per epoch, so that 12 steps cross two epoch boundaries."""
    return write_image_folder(tmp_path_factory.mktemp("pipeline_folder"), train_per_class=10, val_per_class=3)


def _run_args(workdir, data_dir, teacher, method="at"):
    return [f"--config=configs/imagenet.py:student=resnet18,teacher=resnet34,method={method}",
            f"--workdir={workdir}", f"--config.dataset.data_dir={data_dir}", f"--config.teacher.workdir={teacher}",
            *SMALL]


def _check_at_run(workdir, num_classes):
    saved = json.load(open(workdir / "config.json"))
    assert saved["dataset"]["pipeline"] == "stream" and saved["num_classes"] == num_classes
    assert saved["loss"]["at_pairs"] == [[2, 2], [3, 3]] and saved["loss"]["at_beta"] == 1e3
    records = metrics_records(workdir)
    assert all(np.isfinite(r["train/at"]) and r["train/at"] > 0 for r in records if "train/at" in r)
    summary = json.load(open(workdir / "summary.json"))
    assert summary["step"] == 2 and summary["model"] == "resnet18" and summary["teacher"] == "resnet34"
    assert os.listdir(workdir / "input_state") == ["step_2.process_0.json"]


def test_resnet18_with_at_from_resnet34_streams_an_image_folder(folder, tmp_path, run_main):
    teacher = imported_resnet34(tmp_path / "teacher", len(CLASSES))
    run_main(_run_args(tmp_path / "student", folder, teacher) + ["--config.dataset.workers=0"])
    _check_at_run(tmp_path / "student", len(CLASSES))
    state = json.load(open(tmp_path / "student" / "input_state" / "step_2.process_0.json"))
    assert state["step"] == 2 and state["workers"] == 0 and state["grain"]


def test_resnet18_with_at_from_resnet34_streams_tfds_mock_imagenet(tmp_path, run_main):
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    teacher = imported_resnet34(tmp_path / "teacher", 1000)
    with tfds.testing.mock_data(num_examples=8, policy=tfds.testing.MockPolicy.USE_CODE):
        run_main(_run_args(tmp_path / "student", tmp_path / "tfds", teacher) + ["--config.dataset.workers=0"])
    _check_at_run(tmp_path / "student", 1000)
    assert "eval/top5_accuracy" in metrics_records(tmp_path / "student")[-1]


@pytest.mark.parametrize("problem, message", [
    ("corrupt", r"cannot read image .*n00000001/0005.JPEG: not an image file"),
    ("empty", r"class folder .*n00000002 holds no images"),
    ("classes", r"val/ the same ones"),
])
def test_bad_input_stops_in_one_line(folder, tmp_path, cli_error, problem, message):
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    if problem == "corrupt":
        (broken / "train" / "n00000001" / "0005.JPEG").write_bytes(b"\xff\xd8\xff damaged")
    elif problem == "empty":
        for path in (broken / "train" / "n00000002").iterdir():
            path.unlink()
    else:
        shutil.rmtree(broken / "val" / "n00000003")
    line = cli_error(PIPELINE + [f"--workdir={tmp_path / 'run'}", f"--config.dataset.data_dir={broken}",
                                 "--config.dataset.workers=0", "--config.batch_size=30"])
    assert __import__("re").search(message, line), line


def _children(pid):
    children = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(entry))
        except OSError:
            continue
    return children


def _alive(pid):
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"   # not a zombie
    except OSError:
        return False


def _wait_until_gone(pids, timeout=20.0):
    deadline = time.time() + timeout
    while any(_alive(pid) for pid in pids):
        assert time.time() < deadline, f"worker processes {pids} outlived the killed run"
        time.sleep(0.2)


@pytest.mark.slow
def test_sigkill_mid_epoch_resumes_with_the_same_batches(pipeline_folder, tmp_path):
    args = PIPELINE + [f"--config.dataset.data_dir={pipeline_folder}"]
    result = run_cli([f"--workdir={tmp_path / 'reference'}", *args, "--config.dataset.workers=1"])
    assert result.returncode == 0, result.stderr[-3000:]
    workdir = tmp_path / "interrupted"
    for kill_after in (1, 2):   # killed mid-epoch (step 3 of 5, then 6 of 5 + 1), between log lines
        process = start_cli([f"--workdir={workdir}", *args, "--config.dataset.workers=1"])
        wait_for(process, lambda: len(checkpoint_steps(workdir)) >= kill_after
                 and len(metrics_records(workdir)) >= 3 * kill_after + 1)
        workers = _children(process.pid)
        assert workers, "the run decodes in worker processes"
        process.send_signal(signal.SIGKILL)
        process.wait()
        _wait_until_gone(workers)   # orphaned workers notice and exit
    saved = sorted(os.listdir(workdir / "input_state"))
    assert saved and all(name.endswith(".process_0.json") for name in saved)
    # Finish with another worker count: the pipeline restarts at the step (the batches are a function of it).
    result = run_cli([f"--workdir={workdir}", *args, "--config.dataset.workers=0"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "input pipeline restarted at step" in result.stderr
    assert deterministic_records(workdir) == deterministic_records(tmp_path / "reference")


def _losses(workdir):
    records = metrics_records(workdir)
    return (np.array([r["train/total"] for r in records if "train/total" in r]),
            np.array([r["eval/loss"] for r in records if "eval/loss" in r]))


@pytest.mark.slow
def test_two_processes_read_disjoint_parts_and_match_one_process(pipeline_folder, tmp_path):
    # 6 steps of 6 (one epoch is 5): an epoch boundary crossed; input states saved at steps 3 and 6.
    args = PIPELINE + [f"--config.dataset.data_dir={pipeline_folder}", "--config.num_train_steps=6"]
    result = run_cli([f"--workdir={tmp_path / 'one'}", *args, "--config.dataset.workers=0"], devices=2)
    assert result.returncode == 0, result.stderr[-3000:]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    processes = [subprocess.Popen(
        [sys.executable, "-m", "at_jax.train", f"--workdir={tmp_path / 'two'}", *args, "--config.dataset.workers=1"],
        cwd=REPO,
        env=dict(os.environ, PYTHONUNBUFFERED="1", JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                 JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(process_id),
                 XLA_FLAGS="--xla_force_host_platform_device_count=1"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for process_id in range(2)]
    outputs = [process.communicate(timeout=600) for process in processes]
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr[-3000:]
    assert [len(values) for values in _losses(tmp_path / "one")] == [6, 1]
    for name, expected in zip(_losses(tmp_path / "two"), _losses(tmp_path / "one")):
        np.testing.assert_allclose(name, expected, rtol=2e-4)
    states = sorted(os.listdir(tmp_path / "two" / "input_state"))
    assert states == ["step_3.process_0.json", "step_3.process_1.json", "step_6.process_0.json",
                      "step_6.process_1.json"]


def test_parallel_runs_stream_one_pipeline_per_seed(pipeline_folder, tmp_path, run_main):
    run_main(PIPELINE + [f"--workdir={tmp_path / 'job'}", f"--config.dataset.data_dir={pipeline_folder}",
                         "--config.dataset.workers=0", "--config.parallel_runs=2", "--config.num_train_steps=3",
                         "--config.steps_per_call=3"])   # three streamed steps in one compiled call
    runs = sorted(path for path in (tmp_path / "job").iterdir() if (path / "config.json").exists())
    assert len(runs) == 2
    losses = [[r["train/total"] for r in metrics_records(run) if "train/total" in r] for run in runs]
    assert len(losses[0]) == 3 and losses[0] != losses[1]        # seeds 0 and 1: their own batches
    for run in runs:
        assert os.listdir(run / "input_state") == ["step_3.process_0.json"]
    run_main(PIPELINE + [f"--workdir={tmp_path / 'single'}", f"--config.dataset.data_dir={pipeline_folder}",
                         "--config.dataset.workers=0", "--config.num_train_steps=3"])
    single = [r["train/total"] for r in metrics_records(tmp_path / "single") if "train/total" in r]
    np.testing.assert_allclose(losses[0], single, rtol=1e-5)     # run 0 of the job = the single run (seed 0)


def test_cra_imagenet_config_streams_the_same_pipeline(folder, tmp_path, run_main):
    run_main(["--config=configs/cra_imagenet.py:model=resnet18-cra", f"--workdir={tmp_path / 'cra'}",
              f"--config.dataset.data_dir={folder}", "--config.dataset.workers=0", *SMALL])
    summary = json.load(open(tmp_path / "cra" / "summary.json"))
    assert summary["model"] == "resnet18-cra" and summary["step"] == 2 and summary["accuracy"] is not None
