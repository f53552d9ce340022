"""Attention-map and training-curve figures from tiny trained runs: PNGs of the expected pixel size."""
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from matplotlib import image as mpimg

from at_jax import attention_map, visualize
from at_jax.training.run_figures import load_trained_run
from at_jax.figures import attention_maps, curves
from experiment_utils import compilation_cache, register_tiny_cnn
from trainer_utils import REPO, tiny_config


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """configs/tiny.py (16x16 synthetic data, 4 steps): a tiny-cnn-8 teacher and a tiny-cnn-4 student
    trained from it with AT."""
    from at_jax.training import train_and_evaluate  # pylint: disable=import-outside-toplevel
    register_tiny_cnn()
    root = tmp_path_factory.mktemp("visualize")
    teacher, student = str(root / "teacher"), str(root / "student_at")
    common = {"num_train_steps": 4, "eval_every_steps": 2, "metrics.writers": "jsonl", "teacher.model": "tiny-cnn-8"}
    with compilation_cache(str(tmp_path_factory.mktemp("jax_cache"))):
        train_and_evaluate(tiny_config(model="tiny-cnn-8", **common), teacher)
        train_and_evaluate(tiny_config(model="tiny-cnn-4", **common,
                                       **{"loss.at_beta": 1e3, "teacher.workdir": teacher}), student)
    return teacher, student, root


def read_png(path):
    assert os.path.getsize(path) > 0
    return mpimg.imread(path)


def assert_not_blank(pixels):
    assert float(np.std(pixels[..., :3])) > 0.01


def test_attention_figure_student_beside_its_teacher(runs, capsys):
    _, student, root = runs
    out = str(root / "attention.png")
    visualize.main([f"--workdir={student}", f"--out={out}", "--num-images=2"])
    pixels = read_png(out)
    # 2 rows; 1 image column + 2 student groups + 2 teacher groups (the run's own teacher), 160 px each.
    assert pixels.shape[:2] == attention_maps.figure_pixels(2, 5, 100) == (320, 800)
    assert_not_blank(pixels)
    assert "800x320 px" in capsys.readouterr().out


def test_attention_figure_without_teacher_and_dpi(runs):
    _, student, root = runs
    out = str(root / "student_only.png")
    visualize.main([f"--workdir={student}", f"--out={out}", "--num-images=3", "--no-teacher", "--dpi=50"])
    assert read_png(out).shape[:2] == (3 * 80, 3 * 80)


def test_attention_maps_match_the_library(runs):
    teacher, _, _ = runs
    run = load_trained_run(teacher)
    assert isinstance(run, attention_maps.TrainedRun) and run.workdir == teacher
    images, _, mean, std = attention_maps.load_test_images(run.config, 2)
    inputs = (images / 255.0 - np.asarray(mean)) / np.asarray(std)
    logits, columns = attention_maps.attention_columns(run.model, run.variables,
                                                       jnp.asarray(inputs, jnp.float32))
    assert logits.shape == (2, 10)
    assert [title for title, _ in columns] == ["group 1", "group 2"]
    assert [maps.shape for _, maps in columns] == [(2, 16, 16), (2, 8, 8)]
    features = run.model.apply(run.variables, jnp.asarray(inputs, jnp.float32), train=False)[1]
    np.testing.assert_allclose(columns[1][1].reshape(2, -1), attention_map(features[1]), rtol=1e-6)
    for _, maps in columns:   # l2-normalised over positions
        np.testing.assert_allclose(np.sqrt((maps.reshape(2, -1) ** 2).sum(-1)), 1.0, rtol=1e-5)


class SowingModel(nn.Module):
    """A stand-in for an LTPA model: one feature group and one sown attention map (softmax over positions)."""

    @nn.compact
    def __call__(self, x, train: bool):
        features = nn.Conv(4, (3, 3))(x)
        scores = nn.Conv(1, (1, 1))(features)[..., 0]
        attention = jax.nn.softmax(scores.reshape(x.shape[0], -1), axis=-1).reshape(scores.shape)
        self.sow("intermediates", "attention", attention)
        return jnp.mean(features, axis=(1, 2)), (features,)


def test_sown_ltpa_maps_become_columns():
    model = SowingModel()
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 3))
    variables = model.init(jax.random.PRNGKey(1), x, train=False)
    _, columns = attention_maps.attention_columns(model, variables, x)
    assert [title for title, _ in columns] == ["group 1", "LTPA 1"]
    _, state = model.apply(variables, x, train=False, mutable=["intermediates"])
    np.testing.assert_allclose(columns[1][1], state["intermediates"]["attention"][0])
    np.testing.assert_allclose(columns[1][1].sum(axis=(1, 2)), 1.0, rtol=1e-5)


def test_upsample_keeps_a_constant_map_constant():
    maps = np.full((1, 4, 4), 0.25, np.float32)
    np.testing.assert_allclose(attention_maps.upsample(maps, (16, 16)), 0.25, rtol=1e-6)


def test_curves_of_two_runs_on_shared_axes(runs, capsys):
    teacher, student, root = runs
    out = str(root / "curves.png")
    visualize.main(["curves", f"--workdir={teacher}", f"--workdir={student}", f"--out={out}"])
    panels = curves.curve_panels(curves.read_runs([teacher, student]))
    assert panels == ["train/total", "train/ce", "train/at", "eval/accuracy", "train/learning_rate"]
    pixels = read_png(out)
    assert pixels.shape[:2] == curves.figure_pixels(5, 100) == (600, 1200)   # 3 columns x 2 rows of 4x3 in
    assert_not_blank(pixels)
    assert curves.run_labels([teacher, student]) == ["teacher", "student_at"]


def test_curves_of_chosen_metrics(runs):
    teacher, _, root = runs
    out = str(root / "one_panel.png")
    visualize.main(["curves", f"--workdir={teacher}", f"--out={out}", "--metric=eval/accuracy"])
    assert read_png(out).shape[:2] == (300, 400)


def run_visualize(*args):
    return subprocess.run([sys.executable, "-m", "at_jax.visualize", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=120)


def test_user_errors_are_one_line_exit_2(tmp_path):
    missing = run_visualize("--out=x.png")
    assert missing.returncode == 2
    assert missing.stderr == "at_jax: error: the following arguments are required: --workdir\n"
    not_a_run = run_visualize("curves", f"--workdir={tmp_path}", f"--out={tmp_path}/c.png")
    assert not_a_run.returncode == 2
    assert not_a_run.stderr == (f"at_jax: error: {tmp_path} has no metrics.jsonl: it is not the workdir of "
                                "an at_jax run\n")
    assert not os.path.exists(tmp_path / "c.png")
