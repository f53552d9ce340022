"""A teacher at its own input size (``teacher.image_size``) beside the student's (``dataset.image_size``): one
delivered image per example, each network's view an antialiased resize of the same augmented crop, on the
device-resident and the streaming path, single and multi-run jobs, with AT, KD and F-ActT; resume after SIGKILL
gives the uninterrupted numbers."""
import json
import os
import pathlib
import signal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from at_jax.data.from_config import dataset_from_config, input_data
from at_jax.data.views import ImageViews, configured_sizes, loader_size, run_views
from at_jax.default_config import get_config
from at_jax.experiments.plan import as_teacher
from at_jax.losses import build_objective
from at_jax.spatial import resize_antialiased
from at_jax.training.optimizer import make_optimizer
from at_jax.training.state import create_train_state
from at_jax.training.step import StepConfig, make_train_step
from image_data import write_image_folder
from trainer_utils import (TINY_CONFIG, checkpoint_steps, deterministic_records, metrics_records, run_cli, start_cli,
                           wait_for)

FIXTURE = np.load(pathlib.Path(__file__).parent / "fixtures" / "antialiased_resize_torch.npz")


@pytest.mark.parametrize("size", [5, 7, 12, 16])
def test_resize_matches_pytorchs_antialiased_bilinear(size):
    resized = resize_antialiased(jnp.asarray(FIXTURE["images"]), size)
    np.testing.assert_allclose(np.asarray(resized), FIXTURE[f"size_{size}"], atol=2e-6)


def test_sizes_from_the_config():
    assert configured_sizes({"image_size": 20}, 40) == ImageViews(20, 40)
    assert configured_sizes({"image_size": 20}, 0) == ImageViews(20, 20)
    assert configured_sizes({}, 32) == ImageViews(0, 32)
    assert ImageViews(20, 40).sizes(40) == (20, 40) and ImageViews(0, 32).sizes(24) == (24, 32)
    assert ImageViews(0, 0).sizes(40) == (40, 40) and not ImageViews(20, 20).differ and ImageViews(20, 40).differ
    assert loader_size(ImageViews(112, 224)) == 224 and loader_size(ImageViews(0, 224)) == 0
    assert run_views({"dataset": {"image_size": 16}, "teacher": {"image_size": 24}}) == ImageViews(16, 24)
    with pytest.raises(ValueError, match="teacher.image_size must be >= 0"):
        configured_sizes({}, -1)


def test_a_loader_with_an_image_size_decodes_the_larger_view_the_others_keep_their_own():
    synthetic = {"name": "synthetic", "num_train": 4, "num_test": 2, "image_size": 16}
    assert dataset_from_config(synthetic).image_shape == (16, 16, 3)
    assert dataset_from_config(synthetic, ImageViews(16, 24)).image_shape == (24, 24, 3)
    assert dataset_from_config(synthetic, ImageViews(16, 8)).image_shape == (16, 16, 3)
    digits = {"name": "digits", "canvas_size": 24, "image_size": 12}   # the generator has no image_size option
    kind, dataset = input_data(digits, ImageViews(12, 24))
    assert kind == "device" and dataset.image_shape == (24, 24, 3)
    assert dataset_from_config(dict(digits, image_size=0)).image_shape == (24, 24, 3)


def test_a_teacher_trained_in_the_pipeline_trains_at_its_own_size():
    config = get_config()
    config.dataset.image_size, config.teacher.image_size = 20, 40
    teacher = as_teacher(config)
    assert teacher.dataset.image_size == 40 and teacher.teacher.image_size == 0


SEEN: dict = {}   # role -> the inputs a Probe was called with


class Probe(nn.Module):
    """Logits from a linear head; its only feature is its input, recorded at every call (host callback)."""
    role: str

    @nn.compact
    def __call__(self, x, train: bool = False):
        jax.debug.callback(lambda value: SEEN.setdefault(self.role, []).append(np.asarray(value)), x)
        return nn.Dense(3)(x.mean(axis=(1, 2))), (x,)


def test_both_networks_see_the_same_augmented_crop_at_their_own_sizes():
    """Teacher at the delivered 24 px, student at 16: the student's input is the antialiased resize of exactly
    the image the teacher saw (same crop, same flip, same normalisation)."""
    student, teacher = Probe("student"), Probe("teacher")
    objective = build_objective({"at_beta": 1.0, "kd_alpha": 0.5})
    transform, schedule = make_optimizer(get_config().optimizer, 10)
    step_config = StepConfig(total_steps=10, pad=3, flip=True, mean=(0.5,) * 3, std=(0.25,) * 3,
                             student_size=16, teacher_size=24)
    images = np.random.default_rng(0).integers(0, 256, (6, 24, 24, 3), dtype=np.uint8)
    data = {"train_images": jnp.asarray(images), "train_labels": jnp.arange(6, dtype=jnp.int32) % 3}
    teacher_variables = teacher.init(jax.random.PRNGKey(1), jnp.zeros((1, 24, 24, 3)))
    state = create_train_state(student, transform, jnp.zeros((1, 16, 16, 3)), 0)
    step = jax.jit(make_train_step(student, teacher, objective, transform, schedule, step_config))
    SEEN.clear()
    _, metrics = step(state, teacher_variables, data, jnp.arange(4, dtype=jnp.int32))
    jax.effects_barrier()
    assert np.isfinite(float(metrics["total"]))
    teacher_input, student_input = SEEN["teacher"][0], SEEN["student"][-1]
    assert teacher_input.shape == (4, 24, 24, 3) and student_input.shape == (4, 16, 16, 3)
    expected = np.asarray(resize_antialiased(jnp.asarray(teacher_input), 16))
    np.testing.assert_allclose(student_input, expected, atol=1e-5)
    untouched = (images[:4] / 255.0 - 0.5) / 0.25
    assert not np.allclose(teacher_input, untouched)   # augmented (crop or flip), yet the same for both


VIEWS = ["--config.dataset.image_size=12", "--config.teacher.image_size=16"]


def _args(workdir, teacher_dir, *extra):
    return [f"--config={TINY_CONFIG}", f"--workdir={workdir}", f"--config.teacher.workdir={teacher_dir}",
            "--config.loss.at_beta=100", "--config.metrics.writers=jsonl", *VIEWS, *extra]


def test_at_kd_and_factt_from_a_teacher_at_its_own_size_in_a_multi_run_job(tmp_path, teacher_dir, run_main):
    """The session teacher was trained at 16 px; two students learn at 12 px with AT, KD and F-ActT."""
    workdir = tmp_path / "students"
    run_main(_args(workdir, teacher_dir, "--config.loss.kd_alpha=0.5", "--config.loss.factt_beta=10",
                   "--config.parallel_runs=2", "--config.num_train_steps=2"))
    for run in ("seed_0", "seed_1"):
        saved = json.load(open(workdir / run / "config.json"))
        assert saved["dataset"]["image_size"] == 12 and saved["teacher"]["image_size"] == 16
        records = [r for r in metrics_records(workdir / run) if "train/at" in r]
        assert records and all(np.isfinite(r["train/at"]) and r["train/at"] > 0 and r["train/kd"] > 0
                               and r["train/factt"] > 0 for r in records)
        assert json.load(open(workdir / run / "summary.json"))["step"] == 2


def test_input_gradient_transfer_needs_one_size(tmp_path, teacher_dir, cli_error):
    line = cli_error(_args(tmp_path / "grad", teacher_dir, "--config.loss.grad_at_beta=1"))
    assert "grad_at_beta" in line and "teacher.image_size" in line
    assert not os.path.exists(tmp_path / "grad")


@pytest.mark.slow
def test_sigkill_then_resume_matches_the_uninterrupted_run(tmp_path, teacher_dir):
    common = ["--config.num_train_steps=8", "--config.log_every_steps=1", "--config.checkpoint_every_steps=2"]
    reference = tmp_path / "reference"
    result = run_cli(_args(reference, teacher_dir, *common))
    assert result.returncode == 0, result.stderr[-2000:]
    interrupted = tmp_path / "interrupted"
    process = start_cli(_args(interrupted, teacher_dir, *common))
    wait_for(process, lambda: len(checkpoint_steps(interrupted)) >= 1 and len(metrics_records(interrupted)) >= 3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    result = run_cli(_args(interrupted, teacher_dir, *common))
    assert result.returncode == 0, result.stderr[-2000:]
    assert deterministic_records(interrupted) == deterministic_records(reference)


STREAM = ["--config=configs/imagenet.py", "--config.model=wrn-10-1", "--config.compute_dtype=float32",
          "--config.batch_size=6", "--config.num_train_steps=2", "--config.log_every_steps=1",
          "--config.eval_batch_size=6", "--config.progress=False", "--config.metrics.writers=jsonl",
          "--config.dataset.workers=0", "--config.optimizer.learning_rate=0.05"]


@pytest.mark.slow
def test_the_streaming_path_crops_once_at_the_larger_size(tmp_path, run_main):
    """A WRN teacher trained at 24 px on a streamed image folder teaches a student at 16 px: train crops are
    decoded at 24, eval batches at the student's 16."""
    folder = write_image_folder(tmp_path / "folder", train_per_class=4, val_per_class=2)
    teacher = tmp_path / "teacher"
    run_main([*STREAM, f"--workdir={teacher}", f"--config.dataset.data_dir={folder}", "--config.loss.at_beta=0",
              "--config.dataset.image_size=24", "--config.teacher.workdir="])
    student = tmp_path / "student"
    run_main([*STREAM, f"--workdir={student}", f"--config.dataset.data_dir={folder}",
              f"--config.teacher.workdir={teacher}", "--config.teacher.model=wrn-10-1", "--config.loss.at_beta=100",
              "--config.dataset.image_size=16", "--config.teacher.image_size=24", "--config.loss.at_pairs=((2,2),)"])
    saved = json.load(open(student / "config.json"))
    assert saved["dataset"]["pipeline"] == "stream" and saved["teacher"]["image_size"] == 24
    records = [r for r in metrics_records(student) if "train/at" in r]
    assert len(records) == 2 and all(r["train/at"] > 0 for r in records)
    assert json.load(open(student / "summary.json"))["step"] == 2
