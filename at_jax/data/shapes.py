"""A dataset's shapes without its data: what a run compiled for devices it does not have needs
(``python -m at_jax.compile_for``), so that an ImageNet config compiles on a machine without ImageNet.

:func:`dataset_shape` answers from, in turn: counts the caller gives (``num_train``, ``num_eval``,
``num_classes``), the published split sizes of the sets at_jax reads from files (:data:`PUBLISHED`), or the
dataset itself when it is generated in memory (digits, cluttered MNIST, synthetic, a user's registered set).
The image side is the loader's (``dataset.image_size`` and ``teacher.image_size`` for the loaders that take it,
:mod:`at_jax.data.views`); crop padding, flip and normalisation are the loaders'.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from at_jax.data.cifar import CIFAR_MEAN, CIFAR_STD
from at_jax.data.dataset import DatasetError
from at_jax.data.image_folder import IMAGENET_MEAN, IMAGENET_STD
from at_jax.data.from_config import chosen_pipeline, dataset_from_config
from at_jax.data.registry import loader_options
from at_jax.data.views import SIZE_KEY, ImageViews, loader_size


@dataclasses.dataclass(frozen=True)
class DatasetShape:
    """What the train and eval steps of a run see of its dataset."""
    name: str
    num_train: int
    num_eval: int
    num_classes: int
    image_shape: tuple[int, int, int]   # as decoded (the larger of the two views when they differ)
    pad: int = 0                        # in-memory crop padding and flip (the streamed path augments on the host)
    flip: bool = False
    pipeline: str = "device"            # "device" | "stream" (at_jax.data.from_config.chosen_pipeline)
    mean: tuple[float, ...] = IMAGENET_MEAN   # the loader's normalisation (a constant of the step)
    std: tuple[float, ...] = IMAGENET_STD


@dataclasses.dataclass(frozen=True)
class Published:
    """A set's split sizes and classes (its documentation's), its native side (0: decoded at the loader's
    ``image_size``, default ``default_size``) and its in-memory crop padding (None: ``side // 8``) and flip."""
    num_train: int
    num_eval: int
    num_classes: int
    side: int = 0
    default_size: int = 224
    pad: int | None = None
    flip: bool = True
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD


#: The sets at_jax reads from files, as published (ImageNet: ILSVRC-2012 train / val; CUB-200-2011's split).
PUBLISHED = {
    "cifar10": Published(50_000, 10_000, 10, side=32, pad=4, mean=CIFAR_MEAN, std=CIFAR_STD),
    "cifar100": Published(50_000, 10_000, 100, side=32, pad=4, mean=CIFAR_MEAN, std=CIFAR_STD),
    "imagenet": Published(1_281_167, 50_000, 1_000),
    "caltech_birds2011": Published(5_994, 5_794, 200),
}
#: Counts a caller may give for a set that is neither published here nor generated (an image folder, tfds:<name>).
COUNT_KEYS = ("num_train", "num_eval", "num_classes")


def _published_shape(dataset_config: Mapping[str, Any], views: ImageViews, counts: Mapping[str, int]) -> DatasetShape:
    name = dataset_config["name"]
    published = PUBLISHED.get(name)
    size = loader_size(views) or int(dataset_config.get(SIZE_KEY, 0) or 0)
    takes_size = name.startswith("tfds:") or SIZE_KEY in _options_of(name)
    side = (published.side if published and published.side else
            size if size and takes_size else published.default_size if published else size)
    missing = [key for key in COUNT_KEYS if not counts.get(key) and published is None]
    if missing or not side:
        raise DatasetError(f"compile_for does not know the size of dataset {name!r} without its files: give "
                           f"--num-train, --num-eval and --num-classes (and dataset.image_size)")
    values = {key: counts.get(key) or getattr(published, key) for key in COUNT_KEYS}
    image_shape = (side, side, 3)
    pad = published.pad if published and published.pad is not None else max(1, side // 8)
    normalization = {"mean": published.mean, "std": published.std} if published else {}
    return DatasetShape(name, **values, image_shape=image_shape, pad=pad, flip=published.flip if published else True,
                        pipeline=chosen_pipeline(dataset_config, values["num_train"] + values["num_eval"], image_shape),
                        **normalization)


def _options_of(name: str) -> list[str]:
    try:
        return loader_options(name)
    except (DatasetError, KeyError):
        return []


def _generated(name: str) -> bool:
    return name in ("digits", "cluttered_mnist", "synthetic") or (
        name not in PUBLISHED and not name.startswith("tfds:") and name not in ("image_folder", "imagenet"))


def dataset_shape(dataset_config: Mapping[str, Any], views: ImageViews,
                  counts: Mapping[str, int] | None = None) -> DatasetShape:
    """The shapes of the dataset ``dataset_config`` (a run's ``config.dataset``) describes, decoded for
    ``views``; ``counts`` (:data:`COUNT_KEYS`, 0 = unknown) override the published sizes. Raises
    :class:`DatasetError` in one line when the sizes cannot be known without the files."""
    counts = {key: int(value) for key, value in (counts or {}).items() if value}
    name = dataset_config["name"]
    if name in PUBLISHED or not _generated(name) or set(counts) == set(COUNT_KEYS):
        return _published_shape(dataset_config, views, counts)
    dataset = dataset_from_config(dataset_config, views)
    return DatasetShape(name, counts.get("num_train", dataset.num_train),
                        counts.get("num_eval", len(dataset.test_labels)),
                        counts.get("num_classes", dataset.num_classes), tuple(dataset.image_shape),
                        pad=dataset.pad, flip=dataset.flip, pipeline="device", mean=tuple(dataset.mean),
                        std=tuple(dataset.std))
