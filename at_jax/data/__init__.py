"""Datasets and augmentation.

Two input paths, chosen in :func:`at_jax.data.from_config.input_data`: small sets held whole in memory (and on
the devices), and large ones streamed by grain (:mod:`at_jax.data.streaming`, sources in
:mod:`at_jax.data.stream_sources`, host decoding and augmentation in :mod:`at_jax.data.host_augment`).

``dataset_from_config(config.dataset)`` (or ``load_dataset(name, data_dir, seed=...)``) returns a
:class:`Dataset` (uint8 NHWC images in host memory, int32 labels, per-channel mean/std, recommended crop
padding and flip); the names are listed in :mod:`at_jax.data.registry`: at_jax's own, ``tfds:<name>`` (any
prepared TFDS image-classification set) and a user's, added with ``register(name, loader, description)`` from
a config file. ``augment_batch`` and ``normalize`` run inside the compiled train step.
"""
from __future__ import annotations

from at_jax.data.augment import augment_batch, normalize
from at_jax.data.cifar import CIFAR_MEAN, CIFAR_STD
from at_jax.data.dataset import Dataset, DatasetError, channel_mean_std
from at_jax.data.from_config import dataset_from_config
from at_jax.data.registry import available_datasets, load_dataset, register

__all__ = [
    "CIFAR_MEAN", "CIFAR_STD", "Dataset", "DatasetError", "augment_batch", "available_datasets",
    "channel_mean_std", "dataset_from_config", "load_dataset", "normalize", "register",
]
