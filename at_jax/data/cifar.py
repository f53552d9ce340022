"""CIFAR-10 and CIFAR-100 from local files: the python pickles, an .npz, or a prepared TFDS dir.

`data_dir` decides the source, checked in this order:
  1. a path to an `.npz` file with x_train, y_train, x_test, y_test (uint8 NHWC images);
  2. the python folder of the official archive, `cifar-10-batches-py/` (data_batch_1..5,
     test_batch) or `cifar-100-python/` (train, test), either `data_dir` itself or inside it;
  3. `data_dir/cifar10.npz` or `data_dir/cifar100.npz`;
  4. a TFDS data dir holding a prepared `cifar10/` or `cifar100/` in array_record (`tfds build cifar10
     --data_dir DIR --file_format=array_record`; TFDS's default, tfrecord, has no random access and is refused
     in one line), read with `tfds.data_source` (tensorflow_datasets is imported only then; TensorFlow is not
     needed to read).
Nothing is downloaded. The pickles are read with an allow-list unpickler (`safe_pickle`), so a
file crafted to run code is refused instead of executed.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from typing import Any

import numpy as np

from at_jax.data.dataset import Dataset, DatasetError
from at_jax.data.safe_pickle import UnsafePickleError, load_restricted
from at_jax.data.tfds_images import build_command, open_tfds
from at_jax.run_files import as_path, check_reachable

# Normalisation constants of the official attention-transfer code, used for CIFAR-10 and -100.
CIFAR_MEAN = (125.3 / 255.0, 123.0 / 255.0, 113.9 / 255.0)
CIFAR_STD = (63.0 / 255.0, 62.1 / 255.0, 66.7 / 255.0)


@dataclasses.dataclass(frozen=True)
class _CifarSpec:
    title: str
    num_classes: int
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: str
    url: str


_SPECS = {
    "cifar10": _CifarSpec(
        title="CIFAR-10", num_classes=10, folder="cifar-10-batches-py",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)), test_files=("test_batch",),
        label_key="labels", url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
    "cifar100": _CifarSpec(
        title="CIFAR-100", num_classes=100, folder="cifar-100-python",
        train_files=("train",), test_files=("test",),
        label_key="fine_labels", url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"),
}

_Arrays = dict[str, np.ndarray]


def default_data_dir() -> str:
    """$TFDS_DATA_DIR if set, else ~/tensorflow_datasets (where TFDS prepares data)."""
    return os.path.expanduser(os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets")


def _one_line(error: BaseException) -> str:
    return " ".join(f"{type(error).__name__}: {error}".split())


def _missing_message(name: str, spec: _CifarSpec, path: str) -> str:
    return (f"{spec.title} not found in {path}: download {spec.url} and extract it there, "
            f"or run `{build_command(name, path)}`, "
            f"or pass an .npz with x_train, y_train, x_test, y_test")


def _checked_labels(labels: Any, count: int, spec: _CifarSpec, where: str) -> np.ndarray:
    """Labels as int32 (count,), refusing non-integers, wrong lengths and out-of-range values."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.shape != (count,) or (count and not np.issubdtype(labels.dtype, np.integer)):
        raise DatasetError(f"{where}: expected {count} integer labels, got {labels.dtype} {labels.shape}")
    if count and (labels.min() < 0 or labels.max() >= spec.num_classes):
        raise DatasetError(f"{where}: labels must lie in [0, {spec.num_classes}), "
                           f"got [{labels.min()}, {labels.max()}]")
    return labels.astype(np.int32)


def _checked_images(images: Any, where: str) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise DatasetError(f"{where}: expected uint8 NHWC images (N, H, W, 3), "
                           f"got {images.dtype} {images.shape}")
    return images


# --- the python pickles of the official archives --------------------------------------------

def _read_pickle_batch(path: str, spec: _CifarSpec) -> tuple[np.ndarray, np.ndarray]:
    """One batch file: {b'data': uint8 (N, 3072) in CHW order, b'labels': [int]} -> NHWC, int32."""
    try:
        with as_path(path).open("rb") as file:
            batch = load_restricted(file)
    except UnsafePickleError as error:
        raise DatasetError(f"{path}: not a CIFAR batch, refused to unpickle it ({error}); "
                           "the real files hold only numpy arrays and lists") from None
    except Exception as error:  # any parse failure of a damaged file, reported in one line
        raise DatasetError(f"{path}: corrupt CIFAR batch ({_one_line(error)}); "
                           f"re-download {spec.url}") from None
    if not isinstance(batch, dict):
        raise DatasetError(f"{path}: corrupt CIFAR batch (a {type(batch).__name__}, not a dict)")

    def field(key: str) -> Any:
        for candidate in (key.encode(), key):
            if candidate in batch:
                return batch[candidate]
        raise DatasetError(f"{path}: corrupt CIFAR batch (no '{key}' entry)")

    data = field("data")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3 * 32 * 32:
        raise DatasetError(f"{path}: corrupt CIFAR batch ('data' is not uint8 (N, 3072))")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    labels = _checked_labels(field(spec.label_key), images.shape[0], spec, path)
    return images, labels


def _python_folder(path: str, spec: _CifarSpec) -> str | None:
    """The folder holding the pickles (`path` or `path/<folder>`), or None when neither does."""
    required = spec.train_files + spec.test_files
    for folder in (path, str(as_path(path) / spec.folder)):
        present = [f for f in required if (as_path(folder) / f).is_file()]
        if len(present) == len(required):
            return folder
        if present and (folder != path or as_path(path).name == spec.folder):
            missing = ", ".join(f for f in required if f not in present)
            raise DatasetError(f"{spec.title} folder {folder} is incomplete (missing {missing}): "
                               f"re-extract {spec.url}")
    return None


def _read_python_folder(folder: str, spec: _CifarSpec) -> _Arrays:
    arrays = {}
    for split, files in (("train", spec.train_files), ("test", spec.test_files)):
        batches = [_read_pickle_batch(str(as_path(folder) / f), spec) for f in files]
        arrays[f"{split}_images"] = np.concatenate([images for images, _ in batches])
        arrays[f"{split}_labels"] = np.concatenate([labels for _, labels in batches])
    return arrays


# --- .npz ---------------------------------------------------------------------------------------

def _read_npz(path: str, spec: _CifarSpec) -> _Arrays:
    """x_train, y_train, x_test, y_test from an .npz, never unpickling objects."""
    try:
        with as_path(path).open("rb") as file, np.load(file, allow_pickle=False) as archive:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in archive]
            if missing:
                raise DatasetError(f"{path}: the .npz lacks {', '.join(missing)} "
                                   "(needs x_train, y_train, x_test, y_test)")
            raw = {key: archive[key] for key in ("x_train", "y_train", "x_test", "y_test")}
    except DatasetError:
        raise
    except Exception as error:  # a damaged zip, an object array, a truncated member, ...
        raise DatasetError(f"{path}: corrupt .npz ({_one_line(error)})") from None
    arrays = {}
    for split in ("train", "test"):
        images = _checked_images(raw[f"x_{split}"], f"{path} x_{split}")
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = _checked_labels(
            raw[f"y_{split}"], images.shape[0], spec, f"{path} y_{split}")
    return arrays


# --- a prepared TFDS data dir -----------------------------------------------------------------

def _has_tfds_dataset(path: str, name: str) -> bool:
    return any(as_path(path).glob(f"{glob.escape(name)}/*/dataset_info.json"))


def _read_tfds(path: str, name: str) -> _Arrays:
    """Both splits through `tfds.data_source` (random access to array_record; no TensorFlow)."""
    sources, _ = open_tfds(name, path, ("train", "test"))  # one-line errors, a tfrecord set included
    arrays = {}
    try:
        for split, source in sources.items():
            count = len(source)
            images, labels = None, np.empty((count,), np.int64)
            for index in range(count):
                example = source[index]
                image = np.asarray(example["image"])
                if images is None:
                    images = np.empty((count,) + image.shape, image.dtype)
                images[index] = image
                labels[index] = example["label"]
            arrays[f"{split}_images"] = images
            arrays[f"{split}_labels"] = labels
    except Exception as error:  # tfds raises many types; report the cause in one line
        raise DatasetError(f"could not read the TFDS {name} in {path} ({_one_line(error)})") from None
    return arrays


# --- entry point ----------------------------------------------------------------------------

def load_cifar(name: str, data_dir: str | None = None) -> Dataset:
    """CIFAR-10 ("cifar10") or CIFAR-100 ("cifar100", fine labels) from `data_dir` (see module)."""
    spec = _SPECS[name]
    path = str(check_reachable(data_dir if data_dir is not None else default_data_dir(), "dataset.data_dir"))
    if as_path(path).is_file():
        if not path.endswith(".npz"):
            raise DatasetError(f"{path} is a file but not an .npz; pass the folder that holds "
                               f"{spec.folder}/ or a TFDS data dir instead")
        arrays = _read_npz(path, spec)
    elif not as_path(path).is_dir():
        raise DatasetError(_missing_message(name, spec, path))
    elif (folder := _python_folder(path, spec)) is not None:
        arrays = _read_python_folder(folder, spec)
    elif (as_path(path) / f"{name}.npz").is_file():
        arrays = _read_npz(str(as_path(path) / f"{name}.npz"), spec)
    elif _has_tfds_dataset(path, name):
        arrays = _read_tfds(path, name)
    else:
        raise DatasetError(_missing_message(name, spec, path))

    for split in ("train", "test"):
        where = f"{spec.title} {split} split in {path}"
        arrays[f"{split}_images"] = _checked_images(arrays[f"{split}_images"], where)
        arrays[f"{split}_labels"] = _checked_labels(
            arrays[f"{split}_labels"], arrays[f"{split}_images"].shape[0], spec, where)
    return Dataset(name=name, num_classes=spec.num_classes, mean=CIFAR_MEAN, std=CIFAR_STD,
                   pad=4, flip=True, **arrays)
