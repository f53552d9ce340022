"""Datasets: the embedded digits task, CIFAR from every supported file format, synthetic."""

import io
import json
import os
import pickle
import struct

import numpy as np
import pytest

from at_jax.data import (CIFAR_MEAN, CIFAR_STD, Dataset, DatasetError, available_datasets,
                         channel_mean_std, load_dataset)
from at_jax.data.digits import generate_digits
from at_jax.data.safe_pickle import UnsafePickleError, load_restricted


# --- registry -------------------------------------------------------------------------------

def test_available_and_unknown_names():
    assert available_datasets() == ["digits", "cluttered_mnist", "cifar10", "cifar100", "synthetic", "image_folder",
                                    "caltech_birds2011", "imagenet"]
    with pytest.raises(DatasetError, match="digits, cluttered_mnist, cifar10, cifar100, synthetic, image_folder, caltech_birds2011"):
        load_dataset("mnist")
    with pytest.raises(DatasetError, match="no option bogus"):
        load_dataset("synthetic", bogus=1)
    with pytest.raises(DatasetError, match="options: none"):
        load_dataset("cifar10", num_train=3)


# --- digits ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits_default():
    return generate_digits(0)


def test_digits_default_shapes_and_labels(digits_default):
    dataset, scans = digits_default
    assert isinstance(dataset, Dataset)
    assert dataset.train_images.shape == (5000, 32, 32, 3)
    assert dataset.test_images.shape == (1000, 32, 32, 3)
    assert dataset.train_images.dtype == np.uint8 and dataset.test_images.dtype == np.uint8
    assert dataset.train_labels.dtype == np.int32 and dataset.test_labels.dtype == np.int32
    assert (dataset.num_classes, dataset.pad, dataset.flip) == (10, 2, False)
    for labels in (dataset.train_labels, dataset.test_labels):
        assert set(np.unique(labels)) == set(range(10))
        assert np.bincount(labels).min() > 0.6 * len(labels) / 10  # roughly balanced
    assert not dataset.train_images.flags.writeable


def test_digits_splits_use_disjoint_scans_and_true_labels(digits_default):
    from sklearn.datasets import load_digits

    dataset, scans = digits_default
    assert not set(scans["train"]) & set(scans["test"])
    assert len(set(scans["test"])) > 300 and len(set(scans["train"])) > 1300
    targets = load_digits().target
    np.testing.assert_array_equal(dataset.train_labels, targets[scans["train"]])
    np.testing.assert_array_equal(dataset.test_labels, targets[scans["test"]])


def test_digits_mean_std_from_train_split(digits_default):
    dataset, _ = digits_default
    pixels = dataset.train_images.reshape(-1, 3).astype(np.float64) / 255.0
    np.testing.assert_allclose(dataset.mean, pixels.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(dataset.std, pixels.std(axis=0), rtol=1e-9)


def test_digits_deterministic_per_seed_and_different_across_seeds():
    first, first_scans = generate_digits(3, num_train=64, num_test=32)
    again, again_scans = generate_digits(3, num_train=64, num_test=32)
    other, other_scans = generate_digits(4, num_train=64, num_test=32)
    np.testing.assert_array_equal(first.train_images, again.train_images)
    np.testing.assert_array_equal(first.test_images, again.test_images)
    np.testing.assert_array_equal(first_scans["test"], again_scans["test"])
    assert first.mean == again.mean
    assert not np.array_equal(first.train_images, other.train_images)
    assert not np.array_equal(first_scans["train"], other_scans["train"])


@pytest.mark.parametrize("canvas_size,scale", [(32, 2), (24, 1)])
def test_digits_image_shows_the_labelled_scan(canvas_size, scale):
    """Without clutter and noise, the brightest window is the upscaled source scan."""
    from sklearn.datasets import load_digits

    dataset, scans = generate_digits(1, num_train=8, num_test=8, num_fragments=0, noise_std=0.0,
                                     canvas_size=canvas_size, scale=scale)
    assert dataset.train_images.shape == (8, canvas_size, canvas_size, 3)
    sources = load_digits().images / 16.0
    digit = 8 * scale

    def best_correlation(gray, scan):
        target = np.kron(sources[scan], np.ones((scale, scale))).ravel()
        windows = [gray[y:y + digit, x:x + digit].ravel()
                   for y in range(canvas_size - digit + 1) for x in range(canvas_size - digit + 1)]
        return max(np.corrcoef(w, target)[0, 1] for w in windows if w.std() > 0)

    for image, scan in zip(dataset.train_images, scans["train"]):
        gray = image.max(axis=-1).astype(np.float64)
        assert best_correlation(gray, scan) > 0.95
        other = scans["train"][dataset.train_labels != load_digits().target[scan]][0]
        assert best_correlation(gray, other) < best_correlation(gray, scan) - 0.1


def test_digits_through_load_dataset_with_options():
    dataset = load_dataset("digits", seed=2, num_train=40, num_test=20)
    assert dataset.name == "digits"
    assert dataset.train_images.shape == (40, 32, 32, 3) and dataset.test_images.shape == (20, 32, 32, 3)
    with pytest.raises(DatasetError):
        load_dataset("digits", num_train=0)


# --- synthetic ------------------------------------------------------------------------------

def test_synthetic_deterministic_and_configurable():
    first = load_dataset("synthetic", seed=1)
    assert first.train_images.shape == (512, 32, 32, 3) and first.test_images.shape == (128, 32, 32, 3)
    assert first.num_classes == 10 and first.train_labels.max() < 10
    np.testing.assert_array_equal(first.train_images, load_dataset("synthetic", seed=1).train_images)
    assert not np.array_equal(first.train_images, load_dataset("synthetic", seed=2).train_images)
    small = load_dataset("synthetic", num_train=6, num_test=5, num_classes=3, image_size=8)
    assert small.train_images.shape == (6, 8, 8, 3) and small.test_labels.shape == (5,)
    assert small.train_labels.dtype == np.int32 and small.train_labels.max() < 3
    mean, std = channel_mean_std(load_dataset("synthetic", num_train=4096).train_images)
    np.testing.assert_allclose(mean, first.mean, atol=0.01)
    np.testing.assert_allclose(std, first.std, atol=0.01)


# --- CIFAR: files written in the real formats -----------------------------------------------

class _Py2Pickler(pickle._Pickler):
    """Writes protocol-2 pickles the way Python 2's cPickle wrote the CIFAR files: every str and
    bytes as a byte string (SHORT_BINSTRING / BINSTRING), numpy under `numpy.core.multiarray`."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_byte_string(self, obj):
        data = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = _save_byte_string
    dispatch[str] = _save_byte_string


def _py2_pickle(obj) -> bytes:
    buffer = io.BytesIO()
    _Py2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def _random_split(rng, count, num_classes):
    images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, num_classes, count)
    return images, labels


def _batch(images, labels, label_key):
    return {
        b"batch_label": b"training batch 1 of 5",
        label_key: [int(label) for label in labels],
        b"data": images.transpose(0, 3, 1, 2).reshape(len(images), 3072),  # CHW rows
        b"filenames": [b"img_%d.png" % i for i in range(len(images))],
    }


def _write_cifar10_folder(root, rng):
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder)
    train = [_random_split(rng, 3, 10) for _ in range(5)]
    test = _random_split(rng, 4, 10)
    for index, (images, labels) in enumerate(train, start=1):
        with open(os.path.join(folder, f"data_batch_{index}"), "wb") as file:
            file.write(_py2_pickle(_batch(images, labels, b"labels")))
    with open(os.path.join(folder, "test_batch"), "wb") as file:
        file.write(_py2_pickle(_batch(*test, b"labels")))
    with open(os.path.join(folder, "batches.meta"), "wb") as file:
        file.write(_py2_pickle({b"label_names": [b"airplane"] * 10, b"num_vis": 3072}))
    train_images = np.concatenate([images for images, _ in train])
    train_labels = np.concatenate([labels for _, labels in train])
    return folder, (train_images, train_labels), test


def test_py2_style_pickle_is_what_we_think():
    raw = _py2_pickle({b"data": np.zeros((1, 2), np.uint8)})
    assert raw[:2] == b"\x80\x02" and b"cnumpy.core.multiarray\n_reconstruct" in raw
    assert b"_codecs" not in raw
    np.testing.assert_array_equal(load_restricted(raw)[b"data"], np.zeros((1, 2), np.uint8))


@pytest.mark.parametrize("point_at_folder", [False, True])
def test_cifar10_python_folder(tmp_path, point_at_folder):
    folder, (train_images, train_labels), (test_images, test_labels) = \
        _write_cifar10_folder(str(tmp_path), np.random.default_rng(0))
    dataset = load_dataset("cifar10", folder if point_at_folder else str(tmp_path))
    np.testing.assert_array_equal(dataset.train_images, train_images)
    np.testing.assert_array_equal(dataset.train_labels, train_labels)
    np.testing.assert_array_equal(dataset.test_images, test_images)
    np.testing.assert_array_equal(dataset.test_labels, test_labels)
    assert dataset.train_labels.dtype == np.int32 and dataset.num_classes == 10
    assert (dataset.mean, dataset.std, dataset.pad, dataset.flip) == (CIFAR_MEAN, CIFAR_STD, 4, True)
    assert dataset.mean[0] == pytest.approx(125.3 / 255) and dataset.std[2] == pytest.approx(66.7 / 255)


def test_cifar100_python_folder_uses_fine_labels(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    splits = {"train": _random_split(rng, 5, 100), "test": _random_split(rng, 3, 100)}
    for split, (images, labels) in splits.items():
        batch = _batch(images, labels, b"fine_labels")
        batch[b"coarse_labels"] = [int(label) // 5 for label in labels]
        (folder / split).write_bytes(_py2_pickle(batch))
    (folder / "meta").write_bytes(_py2_pickle({b"fine_label_names": [b"x"] * 100}))
    dataset = load_dataset("cifar100", str(tmp_path))
    assert dataset.num_classes == 100
    np.testing.assert_array_equal(dataset.train_images, splits["train"][0])
    np.testing.assert_array_equal(dataset.train_labels, splits["train"][1])
    np.testing.assert_array_equal(dataset.test_labels, splits["test"][1])


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [2, 5])
def test_malicious_pickle_refused_without_running(tmp_path, protocol):
    folder, _, _ = _write_cifar10_folder(str(tmp_path), np.random.default_rng(0))
    marker = tmp_path / "pwned"
    malicious = {b"data": _Payload(marker), b"labels": [0]}
    with open(os.path.join(folder, "data_batch_2"), "wb") as file:
        pickle.dump(malicious, file, protocol=protocol)
    with pytest.raises(DatasetError, match="refused") as error:
        load_dataset("cifar10", str(tmp_path))
    assert "data_batch_2" in str(error.value) and "\n" not in str(error.value)
    assert not marker.exists()
    with pytest.raises(UnsafePickleError):
        load_restricted(pickle.dumps(_Payload(marker), protocol=protocol))
    assert not marker.exists()
    # the same payload through plain pickle really would have run: the test is not vacuous
    pickle.loads(pickle.dumps(_Payload(marker)))
    assert marker.exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "not_a_dict", "wrong_shape"])
def test_corrupt_pickle_is_a_dataset_error(tmp_path, damage):
    folder, _, _ = _write_cifar10_folder(str(tmp_path), np.random.default_rng(0))
    path = os.path.join(folder, "test_batch")
    raw = open(path, "rb").read()
    replacement = {
        "truncate": raw[: len(raw) // 2],
        "garbage": b"\x00\x01 not a pickle at all",
        "not_a_dict": _py2_pickle([1, 2, 3]),
        "wrong_shape": _py2_pickle({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}),
    }[damage]
    open(path, "wb").write(replacement)
    with pytest.raises(DatasetError, match="corrupt") as error:
        load_dataset("cifar10", folder)
    assert "\n" not in str(error.value)


def test_incomplete_folder_and_bad_labels(tmp_path):
    folder, _, _ = _write_cifar10_folder(str(tmp_path), np.random.default_rng(0))
    os.remove(os.path.join(folder, "data_batch_3"))
    with pytest.raises(DatasetError, match="missing data_batch_3"):
        load_dataset("cifar10", str(tmp_path))
    images, _ = _random_split(np.random.default_rng(0), 2, 10)
    with open(os.path.join(folder, "data_batch_3"), "wb") as file:
        file.write(_py2_pickle(_batch(images, [3, 10], b"labels")))
    with pytest.raises(DatasetError, match=r"\[0, 10\)"):
        load_dataset("cifar10", str(tmp_path))


def test_missing_cifar_message_says_how_to_get_it(tmp_path):
    for name, url in (("cifar10", "cifar-10-python.tar.gz"), ("cifar100", "cifar-100-python.tar.gz")):
        with pytest.raises(DatasetError) as error:
            load_dataset(name, str(tmp_path))
        message = str(error.value)
        assert "\n" not in message and str(tmp_path) in message
        assert url in message and f"tfds build {name}" in message and ".npz" in message
    with pytest.raises(DatasetError, match="not found"):
        load_dataset("cifar10", str(tmp_path / "does-not-exist"))


def _write_npz(path, rng, num_classes=10, keras_labels=True):
    train, test = _random_split(rng, 6, num_classes), _random_split(rng, 4, num_classes)
    shape = (lambda y: y[:, None]) if keras_labels else (lambda y: y)
    np.savez(path, x_train=train[0], y_train=shape(train[1].astype(np.uint8)),
             x_test=test[0], y_test=shape(test[1]))
    return train, test


@pytest.mark.parametrize("as_dir", [False, True])
def test_cifar_npz(tmp_path, as_dir):
    path = tmp_path / "cifar100.npz"
    train, test = _write_npz(str(path), np.random.default_rng(2), num_classes=100)
    dataset = load_dataset("cifar100", str(tmp_path if as_dir else path))
    np.testing.assert_array_equal(dataset.train_images, train[0])
    np.testing.assert_array_equal(dataset.train_labels, train[1])
    np.testing.assert_array_equal(dataset.test_images, test[0])
    np.testing.assert_array_equal(dataset.test_labels, test[1])
    assert dataset.test_labels.dtype == np.int32 and dataset.num_classes == 100


def test_corrupt_or_wrong_npz(tmp_path):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"PK\x03\x04 this is no zip")
    with pytest.raises(DatasetError, match="corrupt"):
        load_dataset("cifar10", str(garbage))
    objects = tmp_path / "objects.npz"
    np.savez(objects, x_train=np.array([None, 1], dtype=object), y_train=np.zeros(2),
             x_test=np.zeros(2), y_test=np.zeros(2))
    with pytest.raises(DatasetError, match="corrupt"):  # needs pickle: refused
        load_dataset("cifar10", str(objects))
    missing = tmp_path / "missing.npz"
    np.savez(missing, x_train=np.zeros((1, 32, 32, 3), np.uint8))
    with pytest.raises(DatasetError, match="lacks y_train, x_test, y_test"):
        load_dataset("cifar10", str(missing))
    nchw = tmp_path / "nchw.npz"
    np.savez(nchw, x_train=np.zeros((2, 3, 32, 32), np.uint8), y_train=np.zeros(2, np.int64),
             x_test=np.zeros((1, 3, 32, 32), np.uint8), y_test=np.zeros(1, np.int64))
    with pytest.raises(DatasetError, match="NHWC"):
        load_dataset("cifar10", str(nchw))


# --- CIFAR through tensorflow_datasets --------------------------------------------------------

def test_cifar10_tfds_prepared_array_record(tmp_path):
    """Real array_record files, prepared by a builder with cifar10's name, version and features."""
    tfds = pytest.importorskip("tensorflow_datasets")
    from PIL import Image

    rng = np.random.default_rng(3)
    splits = {"train": _random_split(rng, 6, 10), "test": _random_split(rng, 4, 10)}

    def png(image):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        return buffer.getvalue()  # encoded here: tfds would need TensorFlow to encode arrays

    class FakeCifar10(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        name = "cifar10"
        VERSION = tfds.core.Version("3.0.2")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "id": tfds.features.Text(),
                "image": tfds.features.Image(shape=(32, 32, 3)),
                "label": tfds.features.ClassLabel(num_classes=10)}))

        def _split_generators(self, dl_manager):
            return {split: self._generate_examples(split) for split in splits}

        def _generate_examples(self, split):
            for index, (image, label) in enumerate(zip(*splits[split])):
                key = f"{split}_{index}"
                yield key, {"id": key, "image": png(image), "label": int(label)}

    FakeCifar10(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
    assert list((tmp_path / "cifar10" / "3.0.2").glob("*.array_record-*"))
    dataset = load_dataset("cifar10", str(tmp_path))
    for split in splits:
        images = getattr(dataset, f"{split}_images")
        labels = getattr(dataset, f"{split}_labels")
        assert images.shape == splits[split][0].shape and labels.dtype == np.int32
        # tfds shuffles the records: match each loaded image to its original
        originals = {image.tobytes(): label for image, label in zip(*splits[split])}
        assert {image.tobytes(): int(label) for image, label in zip(images, labels)} == originals


@pytest.mark.parametrize("name,num_classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_tfds_mock_data(tmp_path, name, num_classes):
    """tfds.testing.mock_data drives tfds.data_source (policy USE_CODE: random examples)."""
    tfds = pytest.importorskip("tensorflow_datasets")
    version_dir = tmp_path / name / "3.0.2"
    version_dir.mkdir(parents=True)
    (version_dir / "dataset_info.json").write_text(json.dumps({"name": name}))  # marks the TFDS dir
    with tfds.testing.mock_data(num_examples=5, policy=tfds.testing.MockPolicy.USE_CODE):
        dataset = load_dataset(name, str(tmp_path))
    assert dataset.train_images.shape == (5, 32, 32, 3) and dataset.test_images.shape == (5, 32, 32, 3)
    assert dataset.train_images.dtype == np.uint8 and dataset.train_labels.dtype == np.int32
    assert 0 <= dataset.train_labels.min() and dataset.train_labels.max() < num_classes
    assert dataset.num_classes == num_classes


def test_broken_tfds_dir_is_a_dataset_error(tmp_path):
    version_dir = tmp_path / "cifar10" / "3.0.2"
    version_dir.mkdir(parents=True)
    (version_dir / "dataset_info.json").write_text("{ not json")
    with pytest.raises(DatasetError, match="TFDS cifar10") as error:
        load_dataset("cifar10", str(tmp_path))
    assert "\n" not in str(error.value)
