"""Any prepared TFDS image-classification set by name: dataset ``tfds:<name>``, e.g. ``tfds:mnist``,
``tfds:cifar10``, ``tfds:oxford_flowers102`` (``<name>`` may carry a config and a version, ``name/config:1.0.0``).

Read as at_jax's own TFDS sets are (:mod:`at_jax.data.tfds_images`: ``tfds.data_source``, array_record random
access, no TensorFlow, nothing downloaded) from ``dataset.data_dir``, in memory or streamed as sizes dictate
(:func:`at_jax.data.from_config.input_data`). Options (:class:`TfdsOptions`, keys of ``config.dataset``):

  train_split    "train"; any TFDS split expression, e.g. "train[:90%]"
  eval_split     "": "test" when the set has one, else "validation"
  image_key      "image", an Image feature (uint8; grayscale becomes RGB, replicated)
  label_key      "label", a ClassLabel feature: its ``num_classes`` is the class count
  image_size     0: the set's own when its images have a fixed square shape (28 for mnist, 32 for cifar10),
                 else 224; images are resized (shorter side) and centre-cropped to it
  normalization  "auto": the train images' own statistics in memory, ImageNet's when streamed; or "dataset",
                 "imagenet" (the streaming path takes "imagenet" only)

An unknown name, a missing split or feature, or a label that is not a class label is one line naming what
exists (the prepared sets, the set's splits, its features).
"""
from __future__ import annotations

import dataclasses
import difflib

import numpy as np

from at_jax.data.dataset import Dataset, DatasetError
from at_jax.data.image_folder import NORMALIZATIONS
from at_jax.data.tfds_images import TfdsSet, images_in_memory, import_tfds, open_error

TFDS_PREFIX = "tfds:"
#: The image size of a set whose images have no fixed square shape.
DEFAULT_IMAGE_SIZE = 224
#: Where ``tfds`` looks when ``dataset.data_dir`` is empty (for messages and listings).
DEFAULT_DATA_DIR = "~/tensorflow_datasets"


def is_tfds_name(name: object) -> bool:
    """Whether ``name`` is a ``tfds:<name>`` dataset name."""
    return isinstance(name, str) and name.startswith(TFDS_PREFIX)


@dataclasses.dataclass(frozen=True)
class TfdsOptions:
    """The options of a ``tfds:`` dataset (module docstring); "", 0 and "auto" are chosen from the set."""
    train_split: str = "train"
    eval_split: str = ""
    image_key: str = "image"
    label_key: str = "label"
    image_size: int = 0
    normalization: str = "auto"

    def normalization_for(self, streaming: bool) -> str:
        """The normalisation used on a path: "auto" is the data's own in memory, ImageNet's when streamed."""
        if self.normalization != "auto":
            return self.normalization
        return "imagenet" if streaming else "dataset"


#: The option names of a ``tfds:`` dataset (keys ``config.dataset`` may add).
TFDS_OPTIONS = tuple(field.name for field in dataclasses.fields(TfdsOptions))


def resolve(name: str, data_dir: str | None, options: TfdsOptions) -> tuple[TfdsSet, int]:
    """What dataset ``name`` (``tfds:<name>``) reads and its image size, checked against the set's info."""
    _check_options(name, options)
    tfds_name = name[len(TFDS_PREFIX):]
    tfds = import_tfds(name)
    info = _info(tfds, tfds_name, data_dir)
    image = _feature(name, info.features, options.image_key, "image_key", tfds.features.Image, "an image")
    if np.dtype(image.np_dtype) != np.uint8:
        raise DatasetError(f"{name}: feature {options.image_key!r} holds {np.dtype(image.np_dtype)} images; "
                           f"at_jax reads uint8 images")
    _feature(name, info.features, options.label_key, "label_key", tfds.features.ClassLabel,
             "an integer class label")
    splits = list(info.splits.keys())
    train_split = _checked_split(name, options.train_split, splits, "train_split")
    eval_split = _checked_split(name, options.eval_split or _default_eval_split(name, splits), splits, "eval_split")
    image_size = options.image_size or _native_size(image.shape) or DEFAULT_IMAGE_SIZE
    return TfdsSet(tfds_name, train_split, eval_split, options.image_key, options.label_key), image_size


def load_tfds_any(name: str, data_dir: str | None, seed: int = 0, **options) -> Dataset:
    """Dataset ``name`` (``tfds:<name>``) decoded into memory; ``options`` are :class:`TfdsOptions` fields;
    ``seed`` is unused (the files fix the data)."""
    del seed
    chosen = TfdsOptions(**options)
    tfds_set, image_size = resolve(name, data_dir, chosen)
    return images_in_memory(name, tfds_set, data_dir, image_size=image_size,
                            normalization=chosen.normalization_for(streaming=False), use_bbox=False)


def _check_options(name: str, options: TfdsOptions) -> None:
    if name == TFDS_PREFIX:
        raise DatasetError(f"dataset {name!r} names no TFDS set: write tfds:<name>, e.g. tfds:mnist")
    if not isinstance(options.image_size, int) or not (options.image_size == 0 or options.image_size >= 8):
        raise DatasetError(f"{name}: image_size must be 0 (the set's own) or an integer >= 8, "
                           f"got {options.image_size!r}")
    if options.normalization not in ("auto",) + NORMALIZATIONS:
        raise DatasetError(f"{name}: normalization must be one of {('auto',) + NORMALIZATIONS}, "
                           f"got {options.normalization!r}")
    for key in ("train_split", "eval_split", "image_key", "label_key"):
        if not isinstance(getattr(options, key), str):
            raise DatasetError(f"{name}: {key} must be a string, got {getattr(options, key)!r}")


def _info(tfds, tfds_name: str, data_dir: str | None):
    """The DatasetInfo (features, splits) of a prepared TFDS set; one line when it is unknown or unprepared."""
    try:
        builder = tfds.builder(tfds_name, data_dir=data_dir or None)
        prepared = builder.is_prepared()
    except tfds.core.DatasetNotFoundError:
        raise _unknown(tfds, tfds_name, data_dir) from None
    except Exception as error:  # pylint: disable=broad-except  (tfds raises many types; one line)
        raise open_error(tfds, tfds_name, data_dir, error) from None
    if not prepared:
        raise open_error(tfds, tfds_name, data_dir, FileNotFoundError("not prepared"))
    return builder.info


def _unknown(tfds, tfds_name: str, data_dir: str | None) -> DatasetError:
    """A name neither TFDS's catalogue nor ``data_dir`` has: the closest names and what is prepared there."""
    prepared = prepared_names(data_dir)
    known = prepared + [name for name in tfds.list_builders(with_community_datasets=False) if name not in prepared]
    close = difflib.get_close_matches(tfds_name.split("/")[0].split(":")[0], known, n=3)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return DatasetError(f"unknown TFDS dataset {tfds_name!r}: not in TFDS's catalogue and not prepared in "
                        f"{data_dir or DEFAULT_DATA_DIR}{hint} (prepared there: {', '.join(prepared) or 'none'})")


def prepared_names(data_dir: str | None) -> list[str]:
    """The datasets prepared in a TFDS data dir: its folders holding ``[config/]version/dataset_info.json``."""
    from at_jax.run_files import as_path  # pylint: disable=import-outside-toplevel
    root = as_path(data_dir or DEFAULT_DATA_DIR)
    try:
        infos = [*root.glob("*/*/dataset_info.json"), *root.glob("*/*/*/dataset_info.json")]
    except OSError:
        return []
    return sorted({info.relative_to(root).parts[0] for info in infos})


def _feature(name: str, features, key: str, option: str, kind: type, description: str):
    """Feature ``key`` of the set, checked to exist and to be a ``kind`` (a TFDS feature class)."""
    keys = sorted(features.keys())
    if key not in keys:
        raise DatasetError(f"{name} has no feature {key!r} ({option}); its features: {', '.join(keys)}")
    if not isinstance(features[key], kind):
        fitting = [other for other in keys if isinstance(features[other], kind)]
        raise DatasetError(f"{name}: feature {key!r} ({option}) is {type(features[key]).__name__}, not "
                           f"{description} ({kind.__name__}); its {kind.__name__} features: "
                           f"{', '.join(fitting) or 'none'}")
    return features[key]


def _default_eval_split(name: str, splits: list[str]) -> str:
    for split in ("test", "validation"):
        if split in splits:
            return split
    raise DatasetError(f"{name} has neither a test nor a validation split (its splits: {', '.join(splits)}): set "
                       f"dataset.eval_split, e.g. eval_split='train[90%:]' with train_split='train[:90%]'")


def _checked_split(name: str, expression: str, splits: list[str], option: str) -> str:
    """``expression`` (``train``, ``train[:90%]``, ``train+validation``) when every split it names exists."""
    for part in expression.split("+"):
        base = part.split("[")[0].strip()
        if base not in splits:
            raise DatasetError(f"{name} has no split {base!r} ({option}={expression!r}); its splits: "
                               f"{', '.join(splits)}")
    return expression


def _native_size(shape: tuple) -> int:
    """The side of fixed square images (H == W known), else 0."""
    height, width = shape[:2]
    return int(height) if height and height == width else 0
