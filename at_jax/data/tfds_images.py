"""A prepared TFDS image-classification dataset held in memory, e.g. ``caltech_birds2011`` (CUB-200-2011).

Read through ``tfds.data_source`` (array_record random access; no TensorFlow, nothing downloaded) from
``dataset.data_dir`` (a TFDS data dir: ``tfds build caltech_birds2011 --data_dir DIR --file_format=array_record``;
TFDS's default format, tfrecord, has no random access and is refused in one line). Each image is cut to
its bounding box when the dataset has one and ``bbox_crop`` is on (CUB's, as the paper's fine-tuning did),
then resized so that its shorter side is ``image_size`` and centre-cropped. Splits: ``train`` and ``test``.
The streaming pipeline for datasets that do not fit in memory is issue #13's; this is the on-device path.
"""
from __future__ import annotations

import numpy as np

from at_jax.data.dataset import Dataset, DatasetError
from at_jax.data.image_folder import NORMALIZATIONS, normalization_stats, resize_center_crop


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


def _split(source, image_size: int, use_bbox: bool) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image  # pylint: disable=import-outside-toplevel
    images, labels = [], []
    for index in range(len(source)):
        example = source[index]
        image = np.asarray(example["image"])
        if use_bbox and "bbox" in example:
            image = bbox_crop(image, np.asarray(example["bbox"]))
        images.append(resize_center_crop(Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image),
                                         image_size))
        labels.append(int(example["label"]))
    return np.stack(images), np.asarray(labels, np.int32)


#: at_jax name -> (TFDS name, train split, eval split) of the image-classification sets read from TFDS.
TFDS_SPLITS = {"imagenet": ("imagenet2012", "train", "validation"),
               "caltech_birds2011": ("caltech_birds2011", "train", "test")}


def load_tfds_images(name: str, data_dir: str | None, seed: int = 0, *, image_size: int = 224,
                     normalization: str = "imagenet", bbox_crop: bool = True) -> Dataset:  # pylint: disable=W0621
    """The train and eval splits of dataset ``name`` (a key of ``TFDS_SPLITS``); ``seed`` is unused."""
    del seed
    if normalization not in NORMALIZATIONS or not isinstance(image_size, int) or image_size < 8:
        raise DatasetError(f"{name}: normalization must be one of {NORMALIZATIONS} and image_size an integer >= 8")
    tfds_name, train_split, eval_split = TFDS_SPLITS[name]
    sources, num_classes = open_tfds(tfds_name, data_dir, (train_split, eval_split))
    train_images, train_labels = _split(sources[train_split], image_size, bbox_crop)
    test_images, test_labels = _split(sources[eval_split], image_size, bbox_crop)
    mean, std = normalization_stats(normalization, train_images)
    return Dataset(name=name, train_images=train_images, train_labels=train_labels, test_images=test_images,
                   test_labels=test_labels, num_classes=num_classes, mean=mean, std=std,
                   pad=max(1, image_size // 8), flip=True)


#: TFDS sets that ``tfds build`` prepares only from archives the user downloads (``--manual_dir``).
MANUAL_DOWNLOAD = ("imagenet2012",)


def build_command(name: str, data_dir: str | None, *, overwrite: bool = False) -> str:
    """The ``tfds build`` command that prepares ``name`` for random access (array_record) in ``data_dir``."""
    manual = " --manual_dir=TARS" if name in MANUAL_DOWNLOAD else ""
    return (f"tfds build {name}{manual} --data_dir {data_dir or 'DIR'} --file_format=array_record"
            + (" --overwrite" if overwrite else ""))


def open_tfds(name: str, data_dir: str | None, splits: tuple[str, ...]) -> tuple[dict, int]:
    """``{split: tfds.data_source}`` of a prepared TFDS dataset and its class count; one-line errors."""
    try:
        import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise DatasetError(f"{name} is read with tensorflow_datasets: pip install tensorflow-datasets") from None
    try:
        sources = {split: tfds.data_source(name, split=split, data_dir=data_dir or None, download=False)
                   for split in splits}
        num_classes = sources[splits[0]].dataset_info.features["label"].num_classes
    except Exception as error:  # pylint: disable=broad-except  (tfds raises many types; one line)
        raise _open_error(tfds, name, data_dir, error) from None
    return sources, int(num_classes)


def _open_error(tfds, name: str, data_dir: str | None, error: Exception) -> DatasetError:
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
