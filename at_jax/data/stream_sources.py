"""Random-access sources of encoded images for the streaming path, and the datasets that have them.

A source is what grain reads (``len(source)``, ``source[i]``): each record is ``{"image": encoded bytes or a
decoded uint8 array, "label": int, "name": str}``; decoding and augmentation happen in the pipeline's
workers (:mod:`at_jax.data.host_augment`). Sources are picklable and open their files lazily, so each
worker process opens its own handles.

Streaming datasets (``open_streaming``):
  "image_folder"      ``data_dir/train/<class>/*`` and ``data_dir/val/<class>/*`` (classes = sorted folder names);
  "imagenet"          ``data_dir`` is either such an image folder or a TFDS data dir holding ``imagenet2012``
                      (array_record: random access);
  "caltech_birds2011" CUB-200-2011 from a TFDS data dir, cut to its bounding boxes;
  "tfds:<name>"       any prepared TFDS image-classification set (:mod:`at_jax.data.tfds_sets`, its options).
"""
from __future__ import annotations

import dataclasses
import threading
from typing import Any, Sequence

import numpy as np

from at_jax.data.dataset import DatasetError
from at_jax.data.image_folder import IMAGENET_MEAN, IMAGENET_STD, folder_classes, list_split
from at_jax.data.tfds_images import TFDS_SETS, TfdsSet, bbox_crop, open_tfds
from at_jax.data.tfds_sets import TFDS_PREFIX, TfdsOptions, is_tfds_name, resolve


class FolderSource:
    """The files of one split of an image folder, read as bytes (local paths or etils.epath URLs)."""

    def __init__(self, files: Sequence[Any], labels: np.ndarray):
        self.files = [str(path) for path in files]
        self.labels = np.asarray(labels, np.int32)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        from etils import epath  # pylint: disable=import-outside-toplevel
        name = self.files[index]
        try:
            encoded = epath.Path(name).read_bytes()
        except OSError as error:
            raise DatasetError(f"cannot read image {name}: {error}") from None
        return {"image": encoded, "label": int(self.labels[index]), "name": name}


class TfdsSource:
    """One split of a prepared TFDS dataset (``tfds.data_source``, opened on first use in each process);
    images decoded by TFDS, cut to their bounding box when ``use_bbox`` and the dataset has one."""

    def __init__(self, tfds_set: TfdsSet, split: str, data_dir: str | None, use_bbox: bool, source: Any):
        self.tfds_set, self.split, self.data_dir, self.use_bbox = tfds_set, split, data_dir, use_bbox
        self.length, self._source, self._lock = len(source), source, threading.Lock()

    def __getstate__(self) -> dict:   # a worker process opens its own source
        return dict(self.__dict__, _source=None, _lock=None)

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if self._source is None:
            with self._lock:   # decoding threads of one process open it once
                if self._source is None:
                    self._source = open_tfds(self.tfds_set.tfds_name, self.data_dir, (self.split,),
                                             self.tfds_set.label_key)[0][self.split]
        example = self._source[index]
        image = np.asarray(example[self.tfds_set.image_key])
        if self.use_bbox and "bbox" in example:
            image = bbox_crop(image, np.asarray(example["bbox"]))
        return {"image": image, "label": int(example[self.tfds_set.label_key]),
                "name": f"{self.tfds_set.tfds_name}/{self.split}[{index}]"}


@dataclasses.dataclass(frozen=True)
class StreamingDataset:
    """A dataset read from storage while training: its train and eval sources and what the model needs."""
    name: str
    train: Any
    eval: Any
    num_classes: int
    image_size: int
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.image_size, self.image_size, 3)

    @property
    def num_train(self) -> int:
        return len(self.train)

    @property
    def num_eval(self) -> int:
        return len(self.eval)


#: The named datasets that stream; every ``tfds:<name>`` streams too (:func:`has_streaming_source`).
STREAMING_DATASETS = ("image_folder", "imagenet", "caltech_birds2011")


def has_streaming_source(name: str) -> bool:
    """Whether dataset ``name`` can be streamed (a name of ``STREAMING_DATASETS`` or ``tfds:<name>``)."""
    return name in STREAMING_DATASETS or is_tfds_name(name)


def streaming_names() -> str:
    """The datasets that stream, for messages."""
    return ", ".join(STREAMING_DATASETS + (f"{TFDS_PREFIX}<name>",))


def _folder(name: str, data_dir: str, image_size: int) -> StreamingDataset:
    root, classes = folder_classes(data_dir)
    train, val = (FolderSource(*list_split(root / split, classes)) for split in ("train", "val"))
    return StreamingDataset(name=name, train=train, eval=val, num_classes=len(classes), image_size=image_size)


def _tfds(name: str, tfds_set: TfdsSet, data_dir: str | None, image_size: int, use_bbox: bool) -> StreamingDataset:
    splits = (tfds_set.train_split, tfds_set.eval_split)
    sources, num_classes = open_tfds(tfds_set.tfds_name, data_dir, splits, tfds_set.label_key)
    train, val = (TfdsSource(tfds_set, split, data_dir, use_bbox, sources[split]) for split in splits)
    return StreamingDataset(name=name, train=train, eval=val, num_classes=num_classes, image_size=image_size)


def open_streaming(name: str, data_dir: str | None, **options: Any) -> StreamingDataset:
    """The streaming dataset ``name`` (module docstring); ``options`` are those of its in-memory loader
    (:mod:`at_jax.data.registry`): for the named sets ``image_size`` (train crops, default 224),
    ``normalization`` and ``bbox_crop``, for ``tfds:<name>`` :class:`~at_jax.data.tfds_sets.TfdsOptions`."""
    if not has_streaming_source(name):
        raise DatasetError(f"dataset {name!r} has no streaming source; those that do: {streaming_names()}")
    if is_tfds_name(name):
        chosen = TfdsOptions(**options)
        tfds_set, image_size = resolve(name, data_dir, chosen)
        _check_streaming(name, image_size, chosen.normalization_for(streaming=True))
        return _tfds(name, tfds_set, data_dir, image_size, use_bbox=False)
    return _named(name, data_dir, **options)


def _named(name: str, data_dir: str | None, *, image_size: int = 224, normalization: str = "imagenet",
           bbox_crop: bool = True) -> StreamingDataset:  # pylint: disable=redefined-outer-name
    _check_streaming(name, image_size, normalization)
    if is_folder_dataset(name, data_dir):
        return _folder(name, data_dir, image_size)
    return _tfds(name, TFDS_SETS[name], data_dir, image_size, bbox_crop)


def _check_streaming(name: str, image_size: int, normalization: str) -> None:
    """Train crops of ``image_size`` >= 8 and ImageNet normalisation (the streamed sets are photographs;
    imported torchvision models expect it), or one line."""
    if not isinstance(image_size, int) or image_size < 8:
        raise DatasetError(f"{name}: image_size must be an integer >= 8, got {image_size!r}")
    if normalization != "imagenet":
        raise DatasetError(f"{name}: the streaming path normalises with ImageNet's mean and std "
                           f"(normalization='imagenet'), got {normalization!r}")


def is_folder_dataset(name: str, data_dir: str | None) -> bool:
    """Whether dataset ``name`` at ``data_dir`` is read from an image folder (else from TFDS or memory)."""
    return name == "image_folder" or (name == "imagenet" and is_image_folder(data_dir))


def is_image_folder(data_dir: str | None) -> bool:
    """Whether ``data_dir`` has a ``train/`` folder (else it is taken for a TFDS data dir)."""
    if not data_dir:
        return False
    from at_jax.run_files import as_path  # pylint: disable=import-outside-toplevel
    return (as_path(data_dir) / "train").is_dir()
