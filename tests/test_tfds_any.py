"""Any prepared TFDS image-classification set by name (``tfds:<name>``), in memory and streamed, and
configs/tfds.py.

The sets are real TFDS preparations in array_record, a few examples each, written by TFDS's own builder (no
TensorFlow, no network): ``mnist`` (the catalogue's name and features, read through TFDS's registered MNIST
class), ``at_photos`` (images of varied sizes, a ``species`` label, a text caption, splits train and validation)
and ``at_train_only``. ``tfds.testing.mock_data`` is not used: under its USE_CODE policy the splits are mocks
(TFDS's info lists none), so the split defaults and checks could not be tested with it.
"""
import pickle

import numpy as np
import pytest
from PIL import Image

from at_jax.data import DatasetError, load_dataset
from at_jax.data.from_config import input_data
from at_jax.data.image_folder import IMAGENET_MEAN
from at_jax.data.streaming import ProcessPart, eval_pipeline, train_pipeline
from image_data import random_image
from trainer_utils import metrics_records

tfds = pytest.importorskip("tensorflow_datasets")

MNIST_SPLITS = {"train": 12, "test": 6}


def _digit(split: str, index: int) -> np.ndarray:
    return np.random.default_rng([len(split), index]).integers(0, 256, (28, 28), dtype=np.uint8)


def prepare(data_dir, dataset_name: str, version: str, features: dict, splits: dict, example) -> None:
    """A real TFDS preparation (array_record) of ``dataset_name`` in ``data_dir``: ``example(split, index)``."""

    class Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        name = dataset_name
        VERSION = tfds.core.Version(version)

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

        def _split_generators(self, dl_manager):
            return {split: self._generate_examples(split, count) for split, count in splits.items()}

        def _generate_examples(self, split, count):  # pylint: disable=arguments-differ
            for index in range(count):
                yield f"{split}{index}", example(split, index)

    Builder(data_dir=str(data_dir), file_format="array_record").download_and_prepare()


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    prepare(data_dir, "mnist", "3.0.1", {"image": tfds.features.Image(shape=(28, 28, 1)),
                                         "label": tfds.features.ClassLabel(num_classes=10)}, MNIST_SPLITS,
            lambda split, index: {"image": Image.fromarray(_digit(split, index)), "label": index % 10})
    rng = np.random.default_rng(0)
    prepare(data_dir, "at_photos", "1.0.0", {"image": tfds.features.Image(shape=(None, None, 3)),
                                             "species": tfds.features.ClassLabel(names=["ant", "bee", "cat"]),
                                             "caption": tfds.features.Text()}, {"train": 6, "validation": 3},
            lambda split, index: {"image": random_image(rng, "RGB", (16, 40)), "species": index % 3,
                                  "caption": f"{split} {index}"})
    prepare(data_dir, "at_train_only", "1.0.0", {"image": tfds.features.Image(shape=(8, 8, 3)),
                                                 "label": tfds.features.ClassLabel(num_classes=2)}, {"train": 4},
            lambda split, index: {"image": random_image(rng, "RGB", (8, 9)), "label": index % 2})
    return str(data_dir)


def test_mnist_by_name_in_memory(tfds_dir):
    """tfds:mnist: its own 28x28 size, grayscale replicated to 3 channels, 10 classes, train and test splits,
    normalised with the train images' own statistics."""
    dataset = load_dataset("tfds:mnist", tfds_dir)
    assert dataset.train_images.shape == (12, 28, 28, 3) and dataset.test_images.shape == (6, 28, 28, 3)
    assert dataset.num_classes == 10 and dataset.pad == 3 and dataset.name == "tfds:mnist"
    for split, count in MNIST_SPLITS.items():
        images, labels = getattr(dataset, f"{split}_images"), getattr(dataset, f"{split}_labels")
        assert np.array_equal(images[..., 0], images[..., 1]) and np.array_equal(images[..., 0], images[..., 2])
        originals = {_digit(split, index).tobytes(): index % 10 for index in range(count)}
        assert {image[..., 0].tobytes(): int(label) for image, label in zip(images, labels)} == originals
    assert dataset.mean == pytest.approx((dataset.mean[0],) * 3) and abs(dataset.mean[0] - 0.5) < 0.05  # not ImageNet's


def test_a_set_of_any_size_with_its_defaults_and_overrides(tfds_dir):
    dataset = load_dataset("tfds:at_photos", tfds_dir, label_key="species")
    assert dataset.train_images.shape == (6, 224, 224, 3) and dataset.test_images.shape == (3, 224, 224, 3)
    assert dataset.num_classes == 3 and sorted(dataset.train_labels) == [0, 0, 1, 1, 2, 2]
    small = load_dataset("tfds:at_photos", tfds_dir, label_key="species", image_size=16, eval_split="train[:50%]",
                         train_split="train+validation", normalization="imagenet")
    assert small.train_images.shape == (9, 16, 16, 3) and small.test_images.shape == (3, 16, 16, 3)
    assert small.mean == IMAGENET_MEAN and small.pad == 2


def test_streamed_batches(tfds_dir):
    kind, streaming = input_data({"name": "tfds:mnist", "data_dir": tfds_dir, "pipeline": "stream"})
    assert kind == "stream" and (streaming.num_train, streaming.num_eval) == (12, 6)
    assert streaming.image_size == 28 and streaming.num_classes == 10 and streaming.mean == IMAGENET_MEAN
    batch = next(iter(train_pipeline(streaming.train, seed=0, global_batch=4, num_steps=1, part=ProcessPart(0, 4),
                                     image_size=streaming.image_size, workers=0)))
    assert batch["images"].shape == (4, 28, 28, 3) and batch["images"].dtype == np.uint8
    assert np.array_equal(batch["images"][..., 0], batch["images"][..., 2]) and batch["labels"].max() < 10
    chunks = list(eval_pipeline(streaming.eval, chunk=4, part=ProcessPart(0, 4), image_size=28, workers=0))
    assert [int(chunk["mask"].sum()) for chunk in chunks] == [4, 2]
    worker_copy = pickle.loads(pickle.dumps(streaming.train))   # what a grain worker process opens again
    assert worker_copy[3]["label"] == streaming.train[3]["label"] and worker_copy[3]["name"] == "mnist/train[3]"
    _, photos = input_data({"name": "tfds:at_photos", "data_dir": tfds_dir, "pipeline": "stream",
                            "label_key": "species", "eval_split": "train[:50%]", "image_size": 16})
    assert (photos.num_train, photos.num_eval, photos.image_size, photos.num_classes) == (6, 3, 16, 3)


def test_auto_holds_small_sets_in_memory_and_streams_large_ones(tfds_dir, monkeypatch):
    config = {"name": "tfds:mnist", "data_dir": tfds_dir, "pipeline": "auto"}
    assert input_data(config)[0] == "device"
    monkeypatch.setattr("at_jax.data.from_config.DEVICE_DATA_LIMIT_BYTES", 18 * 3 * 28 * 28 - 1)
    assert input_data(config)[0] == "stream"


@pytest.mark.parametrize("name,options,message", [
    ("tfds:mnsit", {}, "unknown TFDS dataset 'mnsit': not in TFDS's catalogue and not prepared in {dir}; did you "
                       "mean mnist"),
    ("tfds:mnsit", {}, "(prepared there: at_photos, at_train_only, mnist)"),
    ("tfds:cifar10", {}, "no prepared TFDS cifar10 in {dir}: prepare it with `tfds build cifar10 --data_dir {dir} "
                         "--file_format=array_record`"),
    ("tfds:mnist", {"eval_split": "valid"}, "tfds:mnist has no split 'valid' (eval_split='valid'); its splits: "
                                            "train, test"),
    ("tfds:mnist", {"train_split": "train[:5]+extra"}, "has no split 'extra' (train_split='train[:5]+extra')"),
    ("tfds:mnist", {"image_key": "img"}, "tfds:mnist has no feature 'img' (image_key); its features: image, label"),
    ("tfds:at_photos", {}, "tfds:at_photos has no feature 'label' (label_key); its features: caption, image, "
                           "species"),
    ("tfds:at_photos", {"label_key": "caption"}, "tfds:at_photos: feature 'caption' (label_key) is Text, not an "
                                                 "integer class label (ClassLabel); its ClassLabel features: species"),
    ("tfds:at_photos", {"image_key": "species", "label_key": "species"}, "is ClassLabel, not an image (Image)"),
    ("tfds:at_train_only", {}, "tfds:at_train_only has neither a test nor a validation split (its splits: train)"),
    ("tfds:mnist", {"image_size": 4}, "image_size must be 0 (the set's own) or an integer >= 8, got 4"),
    ("tfds:mnist", {"colour": 1}, "dataset 'tfds:mnist' has no option colour; its options: train_split, eval_split"),
])
def test_mistakes_are_one_line_naming_what_exists(tfds_dir, name, options, message):
    with pytest.raises(DatasetError) as error:
        load_dataset(name, tfds_dir, **options)
    assert message.format(dir=tfds_dir) in str(error.value) and "\n" not in str(error.value)


def test_the_streaming_path_refuses_dataset_statistics(tfds_dir):
    with pytest.raises(DatasetError, match="the streaming path normalises with ImageNet's mean and std"):
        input_data({"name": "tfds:mnist", "data_dir": tfds_dir, "pipeline": "stream", "normalization": "dataset"})


COMMON_ARGS = ("--config.pipeline=", "--config.model=wrn-10-1", "--config.num_train_steps=2", "--config.batch_size=4",
               "--config.eval_batch_size=6", "--config.log_every_steps=1", "--config.progress=False",
               "--config.loss.at_beta=0")


def test_configs_tfds_options_are_keys_and_mistakes_end_in_one_line(tfds_dir, tmp_path, cli_error):
    message = cli_error(["--config=configs/tfds.py:mnist", f"--workdir={tmp_path / 'run'}", *COMMON_ARGS,
                         f"--config.dataset.data_dir={tfds_dir}", "--config.dataset.eval_split=validation"])
    assert message == ("at_jax: error: tfds:mnist has no split 'validation' (eval_split='validation'); its splits: "
                       "train, test")
    message = cli_error(["--config=configs/tfds.py:mnsit", f"--workdir={tmp_path / 'run'}", *COMMON_ARGS,
                         f"--config.dataset.data_dir={tfds_dir}"])
    assert message.startswith("at_jax: error: unknown TFDS dataset 'mnsit'") and not (tmp_path / "run").exists()


@pytest.mark.slow
def test_configs_tfds_trains_a_set_named_on_the_command_line(tfds_dir, tmp_path, run_main):
    run_main(["--config=configs/tfds.py:mnist", f"--workdir={tmp_path / 'run'}", *COMMON_ARGS,
              f"--config.dataset.data_dir={tfds_dir}", "--config.dataset.image_size=16"])
    records = metrics_records(tmp_path / "run")
    assert [record["step"] for record in records if "train/accuracy" in record] == [1, 2]
    assert any("eval/accuracy" in record for record in records)
