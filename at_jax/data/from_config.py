"""The one place a dataset config (``config.dataset``) becomes data, and where the input path is chosen.

``dataset.name``: a name of :mod:`at_jax.data.registry` (at_jax's own, ``tfds:<name>`` for any prepared TFDS
image-classification set, or a user's registered with :func:`at_jax.data.register`); the further keys of
``config.dataset`` (beyond ``COMMON_KEYS``) are options of that dataset's loader.
``dataset.pipeline``: "device" holds the decoded dataset in memory and on every device (small sets: digits,
CIFAR, MNIST, fine-tuning sets at small sizes); "stream" reads, decodes and augments batches on the host with
grain (:mod:`at_jax.data.streaming`; image folders, ImageNet, CUB, ``tfds:<name>``); "auto" (the default) streams
a dataset that has a streaming source when its decoded train + eval images would exceed
``DEVICE_DATA_LIMIT_BYTES``.
``dataset.image_size``: the student's input side; loaders that take an ``image_size`` option decode at the larger of
it and ``teacher.image_size``, the others keep their own size and the student sees a resize
(:mod:`at_jax.data.views`).
``dataset.verify``: decode-check every file of an image folder first and fail in one line listing how many are
unreadable (each logged), before anything is read for training or written.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np
from absl import logging

from at_jax.data.dataset import Dataset, DatasetError
from at_jax.data.registry import check_options, load_dataset, loader_options
from at_jax.data.stream_sources import (StreamingDataset, has_streaming_source, is_folder_dataset, open_streaming,
                                        streaming_names)
from at_jax.data.streaming import default_workers
from at_jax.data.verify import require_readable
from at_jax.data.views import SIZE_KEY, ImageViews, loader_size

#: Keys of ``config.dataset`` that are not options of the dataset's loader.
COMMON_KEYS = ("name", "data_dir", "seed", "pipeline", "workers", "verify")
PIPELINES = ("auto", "device", "stream")
#: "auto" streams datasets whose decoded images (uint8, train + eval) exceed this; below it they live on device.
DEVICE_DATA_LIMIT_BYTES = 2 * 1024 ** 3


def _options(dataset_config: Mapping[str, Any], views: ImageViews | None = None) -> dict:
    """The loader's options: the keys beyond ``COMMON_KEYS``; ``image_size`` is the larger of the two views
    for a loader that takes it, and is left out for one that does not (the student's view is a resize)."""
    options = {key: value for key, value in dict(dataset_config).items() if key not in COMMON_KEYS}
    if SIZE_KEY in options and (not options[SIZE_KEY] or SIZE_KEY not in loader_options(dataset_config["name"])):
        del options[SIZE_KEY]   # 0: the loader's default
    elif SIZE_KEY in options and views is not None and loader_size(views):
        options[SIZE_KEY] = loader_size(views)
    return options


def _data_dir(dataset_config: Mapping[str, Any]) -> str | None:
    data_dir = dataset_config.get("data_dir") or None
    return os.path.expanduser(data_dir) if data_dir else None


def dataset_from_config(dataset_config: Mapping[str, Any], views: ImageViews | None = None) -> Dataset:
    """Loads the dataset a ``config.dataset`` (ConfigDict or a saved run's dict) describes into memory; further
    keys are options of the named dataset's generator (e.g. the digits canvas). ``views``: decode for both
    networks' input sizes (:mod:`at_jax.data.views`)."""
    return load_dataset(dataset_config["name"], _data_dir(dataset_config), seed=dataset_config.get("seed", 0),
                        **_options(dataset_config, views))


def streaming_from_config(dataset_config: Mapping[str, Any], views: ImageViews | None = None) -> StreamingDataset:
    """The streaming sources of the dataset a ``config.dataset`` describes (nothing decoded yet)."""
    options = _options(dataset_config, views)
    check_options(dataset_config["name"], options)
    return open_streaming(dataset_config["name"], _data_dir(dataset_config), **options)


def verify_images(name: str, data_dir: str | None, workers: int) -> None:
    """``dataset.verify``: every image of a folder dataset checked before training (:mod:`at_jax.data.verify`),
    with ``workers`` threads (-1: the CPUs); datasets read from TFDS or generated in memory have no files to check."""
    if not is_folder_dataset(name, data_dir):
        logging.warning("dataset.verify checks image folders; dataset %r at %s is not one: nothing to check",
                        name, data_dir)
        return
    require_readable(data_dir, default_workers() if workers < 0 else workers)


def input_data(dataset_config: Mapping[str, Any],
               views: ImageViews | None = None) -> tuple[str, Dataset | StreamingDataset]:
    """("device", the dataset in memory) or ("stream", its streaming sources), as ``dataset.pipeline`` says;
    decoded at the size ``views`` needs."""
    choice, name = dataset_config.get("pipeline", "auto"), dataset_config["name"]
    if choice not in PIPELINES:
        raise DatasetError(f"dataset.pipeline must be one of {', '.join(PIPELINES)}, got {choice!r}")
    if choice == "stream" and not has_streaming_source(name):
        raise DatasetError(f"dataset {name!r} has no streaming source (those that do: "
                           f"{streaming_names()}); use dataset.pipeline=device")
    if dataset_config.get("verify", False):
        verify_images(name, _data_dir(dataset_config), int(dataset_config.get("workers", -1)))
    if choice == "device" or not has_streaming_source(name):
        return "device", dataset_from_config(dataset_config, views)
    streaming = streaming_from_config(dataset_config, views)
    if chosen_pipeline(dataset_config, streaming.num_train + streaming.num_eval, streaming.image_shape) == "device":
        return "device", dataset_from_config(dataset_config, views)
    return "stream", streaming


def chosen_pipeline(dataset_config: Mapping[str, Any], num_images: int, image_shape: tuple) -> str:
    """"device" or "stream" for a dataset of ``num_images`` (train + eval) decoded at ``image_shape``, as
    ``dataset.pipeline`` says ("auto": stream above ``DEVICE_DATA_LIMIT_BYTES`` when the dataset can)."""
    choice = dataset_config.get("pipeline", "auto")
    if choice == "device" or not has_streaming_source(dataset_config["name"]):
        return "device"
    decoded_bytes = num_images * int(np.prod(image_shape))
    return "device" if choice == "auto" and decoded_bytes <= DEVICE_DATA_LIMIT_BYTES else "stream"
