"""A prepared TFDS image-classification dataset held in memory, e.g. ``caltech_birds2011`` (CUB-200-2011).

Read through ``tfds.data_source`` (array_record random access; no TensorFlow, nothing downloaded) from
``dataset.data_dir`` (a TFDS data dir: ``tfds build caltech_birds2011 --data_dir DIR --file_format=array_record``;
TFDS's default format, tfrecord, has no random access and is refused in one line). Each image is cut to
its bounding box when the dataset has one and ``bbox_crop`` is on (CUB's, as the paper's fine-tuning did),
then resized so that its shorter side is ``image_size`` and centre-cropped (grayscale and alpha become RGB).
:class:`TfdsSet` says what is read: at_jax's own names in ``TFDS_SETS``, any other set as ``tfds:<name>``
(:mod:`at_jax.data.tfds_sets`). The streaming path reads the same sets (:mod:`at_jax.data.stream_sources`).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from at_jax.data.dataset import Dataset, DatasetError
from at_jax.data.image_folder import NORMALIZATIONS, normalization_stats, resize_center_crop


@dataclasses.dataclass(frozen=True)
class TfdsSet:
    """What is read from a TFDS image-classification dataset: its TFDS name, the train and eval splits (TFDS split
    expressions, e.g. ``train[:90%]``) and the image and label features."""
    tfds_name: str
    train_split: str = "train"
    eval_split: str = "test"
    image_key: str = "image"
    label_key: str = "label"


#: at_jax's own names of TFDS image-classification sets (any other one: ``tfds:<name>``).
TFDS_SETS = {"imagenet": TfdsSet("imagenet2012", eval_split="validation"),
             "caltech_birds2011": TfdsSet("caltech_birds2011")}


def bbox_crop(image: np.ndarray, bbox) -> np.ndarray:
    """``image`` (H, W, C) cut to a TFDS box ``(ymin, xmin, ymax, xmax)`` in [0, 1] (corners in any order);
    the whole image when the box is empty."""
    height, width = image.shape[:2]
    ymin, ymax = sorted(float(v) for v in (bbox[0], bbox[2]))
    xmin, xmax = sorted(float(v) for v in (bbox[1], bbox[3]))
    top, bottom = int(np.floor(ymin * height)), int(np.ceil(ymax * height))
    left, right = int(np.floor(xmin * width)), int(np.ceil(xmax * width))
    top, left, bottom, right = max(0, top), max(0, left), min(height, bottom), min(width, right)
    if bottom - top < 1 or right - left < 1:
        return image
    return image[top:bottom, left:right]


def _split(source, tfds_set: TfdsSet, split: str, image_size: int, use_bbox: bool) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image  # pylint: disable=import-outside-toplevel
    images, labels = [], []
    for index in range(len(source)):
        example = source[index]
        image = np.asarray(example[tfds_set.image_key])
        if use_bbox and "bbox" in example:
            image = bbox_crop(image, np.asarray(example["bbox"]))
        images.append(resize_center_crop(Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image),
                                         image_size))
        labels.append(int(example[tfds_set.label_key]))
    if not images:
        raise DatasetError(f"the TFDS {tfds_set.tfds_name} split {split!r} holds no examples")
    return np.stack(images), np.asarray(labels, np.int32)


def images_in_memory(name: str, tfds_set: TfdsSet, data_dir: str | None, *, image_size: int, normalization: str,
                     use_bbox: bool) -> Dataset:
    """The train and eval splits of ``tfds_set`` decoded into memory as dataset ``name``: ``image_size`` squares
    (shorter side resized, centre crop), normalised with ImageNet's statistics or the train images' own."""
    splits = (tfds_set.train_split, tfds_set.eval_split)
    sources, num_classes = open_tfds(tfds_set.tfds_name, data_dir, splits, tfds_set.label_key)
    (train_images, train_labels), (test_images, test_labels) = (
        _split(sources[split], tfds_set, split, image_size, use_bbox) for split in splits)
    mean, std = normalization_stats(normalization, train_images)
    return Dataset(name=name, train_images=train_images, train_labels=train_labels, test_images=test_images,
                   test_labels=test_labels, num_classes=num_classes, mean=mean, std=std,
                   pad=max(1, image_size // 8), flip=True)


def check_image_options(name: str, image_size, normalization: str) -> None:
    """One line unless ``normalization`` is one of ``NORMALIZATIONS`` and ``image_size`` an integer >= 8."""
    if normalization not in NORMALIZATIONS or not isinstance(image_size, int) or image_size < 8:
        raise DatasetError(f"{name}: normalization must be one of {NORMALIZATIONS} and image_size an integer >= 8, "
                           f"got {normalization!r} and {image_size!r}")


def load_tfds_images(name: str, data_dir: str | None, seed: int = 0, *, image_size: int = 224,
                     normalization: str = "imagenet", bbox_crop: bool = True) -> Dataset:  # pylint: disable=W0621
    """The train and eval splits of dataset ``name`` (a key of ``TFDS_SETS``); ``seed`` is unused."""
    del seed
    check_image_options(name, image_size, normalization)
    return images_in_memory(name, TFDS_SETS[name], data_dir, image_size=image_size, normalization=normalization,
                            use_bbox=bbox_crop)


#: TFDS sets that ``tfds build`` prepares only from archives the user downloads (``--manual_dir``).
MANUAL_DOWNLOAD = ("imagenet2012",)


def build_command(name: str, data_dir: str | None, *, overwrite: bool = False) -> str:
    """The ``tfds build`` command that prepares ``name`` for random access (array_record) in ``data_dir``."""
    manual = " --manual_dir=TARS" if name in MANUAL_DOWNLOAD else ""
    return (f"tfds build {name}{manual} --data_dir {data_dir or 'DIR'} --file_format=array_record"
            + (" --overwrite" if overwrite else ""))


def import_tfds(name: str):
    """The ``tensorflow_datasets`` module, or a one-line error saying how to install it."""
    try:
        import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise DatasetError(f"{name} is read with tensorflow_datasets: pip install tensorflow-datasets") from None
    return tfds


def open_tfds(name: str, data_dir: str | None, splits: tuple[str, ...], label_key: str = "label") -> tuple[dict, int]:
    """``{split: tfds.data_source}`` of a prepared TFDS dataset and its class count (of feature ``label_key``);
    one-line errors."""
    tfds = import_tfds(name)
    try:
        sources = {split: tfds.data_source(name, split=split, data_dir=data_dir or None, download=False)
                   for split in splits}
        num_classes = sources[splits[0]].dataset_info.features[label_key].num_classes
    except Exception as error:  # pylint: disable=broad-except  (tfds raises many types; one line)
        raise open_error(tfds, name, data_dir, error) from None
    return sources, int(num_classes)


def open_error(tfds, name: str, data_dir: str | None, error: Exception) -> DatasetError:
    """Why ``tfds.data_source`` refused ``name``, in one line: prepared in a format without random access
    (TFDS's default, tfrecord), not prepared at all, or tfds's own reason."""
    where = data_dir or "~/tensorflow_datasets"
    try:
        builder = tfds.builder(name, data_dir=data_dir or None)
        prepared = builder.is_prepared()
        formats = {f.value for f in builder.info.available_file_formats()}
        random_access = {f.value for f in tfds.core.FileFormat.with_random_access()}
    except Exception:  # pylint: disable=broad-except  (a damaged dataset_info.json, an unknown name)
        prepared, formats, random_access = None, set(), set()
    if prepared and formats and not formats & random_access:
        return DatasetError(
            f"the TFDS {name} in {where} was prepared as {', '.join(sorted(formats))}; at_jax reads TFDS sets by "
            f"random access, which needs array_record: convert it with `tfds convert_format "
            f"--dataset_version_dir={builder.data_dir} --out_file_format=array_record` or rebuild it with "
            f"`{build_command(name, data_dir, overwrite=True)}`")
    if prepared is False:
        return DatasetError(f"no prepared TFDS {name} in {where}: prepare it with `{build_command(name, data_dir)}`")
    return DatasetError(f"cannot read the TFDS {name} in {where} (prepare it with `{build_command(name, data_dir)}`)"
                        f": {' '.join(str(error).split())[:200]}")
