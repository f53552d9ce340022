"""An image folder in the layout ImageNet users have, held in memory: ``DATA/train/<class>/*``, ``DATA/val/<class>/*``.

Classes are the sorted folder names of ``train`` (their count sets ``num_classes``); ``val`` must have the same
classes. Every image (JPEG, PNG, ...; grayscale, CMYK and alpha are converted to RGB) is resized so that its
shorter side is ``image_size`` and centre-cropped to ``image_size`` square, then kept as uint8 in host memory:
this is the on-device path, right for fine-tuning sets of a few thousand images (CUB, MIT Indoor Scenes at a
small size). Normalisation is ImageNet's (``normalization="imagenet"``, what imported torchvision models
expect) or the data's own (``"dataset"``). An unreadable image fails the load with its path (never skipped
silently). Paths may be local or any etils.epath URL.
"""
from __future__ import annotations

import numpy as np

from at_jax.data.dataset import Dataset, DatasetError, channel_mean_std
from at_jax.run_files import check_reachable

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff")
NORMALIZATIONS = ("imagenet", "dataset")


def normalization_stats(normalization: str, train_images: np.ndarray) -> tuple[tuple, tuple]:
    """(mean, std): ImageNet's ("imagenet", what imported torchvision weights expect) or the data's ("dataset")."""
    return (IMAGENET_MEAN, IMAGENET_STD) if normalization == "imagenet" else channel_mean_std(train_images)


def class_folders(split_dir) -> list[str]:
    """The sorted names of the class folders in ``split_dir`` (its subfolders)."""
    return sorted(entry.name for entry in split_dir.iterdir() if entry.is_dir())


def folder_classes(data_dir: str | None):
    """(root path, class names) of an image folder, checked: train/ and val/ exist, >= 2 classes, the same in
    both."""
    if not data_dir:
        raise DatasetError("an image folder needs dataset.data_dir (a folder with train/<class>/ and val/<class>/)")
    root = check_reachable(data_dir, role="dataset.data_dir")
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise DatasetError(f"{data_dir} has no {split}/ folder (expected {data_dir}/{split}/<class>/<image>)")
    classes, val_classes = class_folders(root / "train"), class_folders(root / "val")
    if len(classes) < 2 or val_classes != classes:
        raise DatasetError(f"{data_dir}: train/ needs >= 2 class folders and val/ the same ones; train has "
                           f"{len(classes)}, val differs in {sorted(set(classes) ^ set(val_classes))[:3]}")
    return root, classes


def list_split(split_dir, classes: list[str]) -> tuple[list, np.ndarray]:
    """The image files of ``split_dir/<class>/`` (sorted within each class, classes in order) and their labels;
    an empty class folder is an error."""
    files, labels = [], []
    for label, name in enumerate(classes):
        class_files = sorted(p for p in (split_dir / name).iterdir() if p.name.lower().endswith(EXTENSIONS))
        if not class_files:
            raise DatasetError(f"class folder {split_dir / name} holds no images ({', '.join(EXTENSIONS)})")
        files += class_files
        labels += [label] * len(class_files)
    return files, np.asarray(labels, np.int32)


def resize_center_crop(image, image_size: int) -> np.ndarray:
    """A PIL image as RGB uint8 (image_size, image_size, 3): shorter side resized to ``image_size`` (bilinear),
    then the centre square."""
    from PIL import Image  # pylint: disable=import-outside-toplevel
    image = image.convert("RGB")
    scale = image_size / min(image.size)
    width, height = max(image_size, round(image.size[0] * scale)), max(image_size, round(image.size[1] * scale))
    image = image.resize((width, height), Image.Resampling.BILINEAR)
    left, top = (width - image_size) // 2, (height - image_size) // 2
    return np.asarray(image.crop((left, top, left + image_size, top + image_size)), np.uint8)


def _read(path, image_size: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError  # pylint: disable=import-outside-toplevel
    try:
        with path.open("rb") as file, Image.open(file) as image:
            return resize_center_crop(image, image_size)
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise DatasetError(f"cannot read image {path}: {str(error).splitlines()[0] if str(error) else 'damaged'}") from None


def _split(split_dir, classes: list[str], image_size: int) -> tuple[np.ndarray, np.ndarray]:
    files, labels = list_split(split_dir, classes)
    return np.stack([_read(path, image_size) for path in files]), labels


def load_image_folder(data_dir: str | None, seed: int = 0, *, image_size: int = 224,
                      normalization: str = "imagenet") -> Dataset:
    """The train and val splits of ``data_dir`` (see the module docstring); ``seed`` is unused."""
    del seed
    if normalization not in NORMALIZATIONS:
        raise DatasetError(f"image_folder normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    if not isinstance(image_size, int) or image_size < 8:
        raise DatasetError(f"image_folder image_size must be an integer >= 8, got {image_size!r}")
    root, classes = folder_classes(data_dir)
    train_images, train_labels = _split(root / "train", classes, image_size)
    test_images, test_labels = _split(root / "val", classes, image_size)
    mean, std = normalization_stats(normalization, train_images)
    return Dataset(name="image_folder", train_images=train_images, train_labels=train_labels,
                   test_images=test_images, test_labels=test_labels, num_classes=len(classes), mean=mean,
                   std=std, pad=max(1, image_size // 8), flip=True)
