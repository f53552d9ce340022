"""A user's own dataset: ``at_jax.data.register(name, loader, description)``, typically from the config file that
trains on it; its loader's keyword-only parameters are its options."""
import json
import subprocess
import sys

import numpy as np
import pytest

import at_jax.data
from at_jax.data import Dataset, DatasetError, available_datasets, load_dataset, registry
from at_jax.data.from_config import input_data
from trainer_utils import REPO, metrics_records, run_cli

USER_CONFIG = '''
"""A user's config file: a dataset of its own, bright or dark squares, registered as "squares"."""
import numpy as np

import at_jax.data
from at_jax.default_config import get_config as get_base_config, set_dataset


def load_squares(data_dir, seed, *, num_train=32, size=8):
    """Noisy squares, bright (class 1) or dark (class 0); ``data_dir`` is not used."""
    del data_dir
    rng = np.random.default_rng(seed)

    def split(count):
        labels = rng.integers(0, 2, count).astype(np.int32)
        noise = rng.integers(0, 64, (count, size, size, 3))
        return (noise + 160 * labels[:, None, None, None]).astype(np.uint8), labels

    (train_images, train_labels), (test_images, test_labels) = split(num_train), split(16)
    return at_jax.data.Dataset(name="squares", train_images=train_images, train_labels=train_labels,
                               test_images=test_images, test_labels=test_labels, num_classes=2,
                               mean=(0.5, 0.5, 0.5), std=(0.3, 0.3, 0.3), pad=1, flip=True)


at_jax.data.register("squares", load_squares, "squares: bright or dark")


def get_config():
    config = get_base_config()
    config.pipeline = ""
    config.teacher.num_epochs = 0
    config.model = "wrn-10-1"
    set_dataset(config, "squares")
    config.dataset.num_train = 32
    config.dataset.size = 8
    config.batch_size, config.num_train_steps, config.eval_batch_size = 8, 4, 8
    config.log_every_steps = config.eval_every_steps = config.checkpoint_every_steps = 2
    config.progress = False
    config.loss.at_beta = 0.0
    return config
'''


@pytest.fixture
def fresh_registry(monkeypatch):
    """The user datasets of this test only (other tests see at_jax's own names)."""
    monkeypatch.setattr(registry, "_REGISTERED", {})


def load_tiles(data_dir, seed, *, count=6, size=8):
    """``count`` train and 4 test images of ``size`` squared, class = image index mod 3."""
    del data_dir
    images = np.random.default_rng(seed).integers(0, 256, (count + 4, size, size, 3), dtype=np.uint8)
    labels = (np.arange(count + 4) % 3).astype(np.int32)
    return Dataset(name="tiles", train_images=images[:count], train_labels=labels[:count],
                   test_images=images[count:], test_labels=labels[count:], num_classes=3, mean=(0.5,) * 3,
                   std=(0.3,) * 3, pad=1, flip=False)


def test_a_registered_loader_is_a_dataset_with_options(fresh_registry):
    assert at_jax.data.register("tiles", load_tiles, "tiles: random") is load_tiles
    assert available_datasets()[-1] == "tiles" and registry.source_of("tiles") == __file__
    dataset = load_dataset("tiles", seed=3, count=9, size=5)
    assert isinstance(dataset, at_jax.data.Dataset) and dataset.train_images.shape == (9, 5, 5, 3)
    assert np.array_equal(dataset.train_images, load_tiles(None, 3, count=9, size=5).train_images)
    kind, loaded = input_data({"name": "tiles", "seed": 1, "count": 3, "pipeline": "auto"})
    assert kind == "device" and loaded.num_train == 3
    with pytest.raises(DatasetError, match="^dataset 'tiles' has no option colour; its options: count, size$"):
        load_dataset("tiles", colour=1)
    with pytest.raises(DatasetError, match="has no streaming source"):
        input_data({"name": "tiles", "pipeline": "stream"})
    with pytest.raises(DatasetError, match=r"one of digits, .*, imagenet, tiles \(tiles: random\) or tfds:<name>"):
        load_dataset("tile")
    at_jax.data.register("tiles", lambda data_dir, seed: "not a dataset")   # again: replaces
    with pytest.raises(DatasetError, match="^dataset 'tiles': its loader returned str, not an at_jax.data.Dataset$"):
        load_dataset("tiles")


@pytest.mark.parametrize("name,loader,message", [
    ("cifar10", load_tiles, "dataset name 'cifar10' is at_jax's own (digits, cluttered_mnist, cifar10, cifar100"),
    ("tfds:tiles", load_tiles, "dataset name 'tfds:tiles' is at_jax's own ("),
    (" ", load_tiles, "a dataset name must be a non-empty string, got ' '"),
    ("tiles", 3, "dataset 'tiles': the loader must be a function loader(data_dir, seed, **options)"),
])
def test_taken_names_and_non_loaders_are_refused_in_one_line(fresh_registry, name, loader, message):
    with pytest.raises(DatasetError) as error:
        at_jax.data.register(name, loader)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert name not in available_datasets() or name == "cifar10"


def test_a_config_file_that_takes_a_built_in_name_ends_in_one_line(fresh_registry, tmp_path, cli_error):
    path = tmp_path / "taken.py"
    path.write_text(USER_CONFIG.replace('register("squares"', 'register("digits"'))
    message = cli_error([f"--config={path}", f"--workdir={tmp_path / 'run'}"])
    assert "dataset name 'digits' is at_jax's own" in message and not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_dataset_registered_in_a_config_file_trains_through_the_cli(tmp_path):
    path = tmp_path / "my_squares.py"
    path.write_text(USER_CONFIG)
    workdir = tmp_path / "run"
    result = run_cli([f"--config={path}", f"--workdir={workdir}", "--config.num_train_steps=2",
                      "--config.dataset.num_train=24", "--config.pipeline="])
    assert result.returncode == 0, result.stderr[-2000:]
    records = metrics_records(workdir)
    assert [record["step"] for record in records if "train/accuracy" in record] == [2]
    assert [record["step"] for record in records if "eval/accuracy" in record] == [2]
    saved = json.loads((workdir / "config.json").read_text())
    assert saved["dataset"]["name"] == "squares" and saved["dataset"]["num_train"] == 24
    assert saved["num_classes"] == 2 and saved["num_train_examples"] == 24
    assert saved["dataset_source"] == str(path)
    # Another process draws the run's figure: the dataset is registered again from that file.
    figure = subprocess.run([sys.executable, "-m", "at_jax.visualize", f"--workdir={workdir}",
                             f"--out={tmp_path / 'maps.png'}", "--num-images=2"], capture_output=True, text=True,
                            cwd=REPO, timeout=300)
    assert figure.returncode == 0, figure.stderr[-2000:]
    assert (tmp_path / "maps.png").stat().st_size > 0
