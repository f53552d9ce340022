"""Weakly supervised segmentation of an image folder: pairs images with masks, attention maps of a trained
model (or the colour-contrast saliency baseline), binarised and scored by the Jaccard index per image.

Used by ``python -m at_jax.segment``; the maths is in :mod:`at_jax.figures.segmentation`.
"""
from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from at_jax.attention import attention_map
from at_jax.data import CIFAR_MEAN, CIFAR_STD, dataset_from_config
from at_jax.errors import FigureError
from at_jax.run_files import as_path
from at_jax.figures.segmentation import color_contrast_saliency, segmentation_jaccard

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".ppm")
SOURCES = ("auto", "ltpa", "activation")


class SegmentError(FigureError):
    """Input the user can fix."""


def _images_by_stem(folder: str) -> dict[str, str]:
    return {path.stem: str(path) for path in sorted(as_path(folder).iterdir(), key=lambda p: p.name)
            if path.name.lower().endswith(IMAGE_EXTENSIONS)}


def pair_files(image_dir: str, mask_dir: str) -> list[tuple[str, str, str]]:
    """``(stem, image_path, mask_path)`` for each image, sorted by stem; raises if any mask is missing."""
    for name, folder in (("--images", image_dir), ("--masks", mask_dir)):
        if not folder or not as_path(folder).is_dir():
            raise SegmentError(f"{name} must be an existing folder, got {folder!r}")
    images, masks = _images_by_stem(image_dir), _images_by_stem(mask_dir)
    if not images:
        raise SegmentError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {image_dir}")
    missing = sorted(set(images) - set(masks))
    if missing:
        raise SegmentError(f"{len(missing)} image(s) without a mask of the same name in {mask_dir}, "
                           f"e.g. {missing[0]!r}")
    return [(stem, images[stem], masks[stem]) for stem in sorted(images)]


def read_image(path: str, mode: str):
    from PIL import Image, UnidentifiedImageError  # pylint: disable=import-outside-toplevel
    try:
        with as_path(path).open("rb") as file, Image.open(file) as image:
            return image.convert(mode)
    except (OSError, UnidentifiedImageError) as error:
        raise SegmentError(f"cannot read {path}: {str(error).splitlines()[0]}") from None


class ModelAttention:
    """Attention maps of a trained run: ``maps(images uint8 list) -> list of (h, w) arrays``."""

    def __init__(self, model, variables: dict, config: dict, level: int, source: str, image_size: int,
                 workdir: str = ""):
        self.model, self.variables = model, variables
        self.mean, self.std, default_size = _preprocessing(config)
        self.image_size = image_size or default_size
        self.level, self.source, self.name = level, source, config.get("model", "model")

        def forward(variables, x):
            (_, features), sown = self.model.apply(variables, x, train=False, mutable=["intermediates"])
            sown_maps = tuple(sown.get("intermediates", {}).get("attention", ()))
            activation_maps = tuple(attention_map(f, normalize="l1").reshape(f.shape[:3]) for f in features)
            return sown_maps, activation_maps

        sample = jnp.zeros((1, self.image_size, self.image_size, 3), jnp.float32)
        try:
            sown_shapes, activation_shapes = jax.eval_shape(forward, self.variables, sample)
        except Exception as error:  # shape or structure mismatch between the run and these variables
            size = f"{self.image_size}x{self.image_size}"
            raise SegmentError(f"cannot run {self.name!r} from {workdir} on {size} images: "
                               f"{(str(error).splitlines() or [type(error).__name__])[0]}") from None
        if source == "ltpa" and not sown_shapes:
            raise SegmentError(f"model {self.name!r} sows no attention maps; use --source=activation")
        available = len(sown_shapes if sown_shapes and source != "activation" else activation_shapes)
        if not -available <= level < available:
            raise SegmentError(f"--level={level} is out of range: the model gives {available} maps")
        self._forward = jax.jit(forward)

    def maps(self, images: list) -> list[np.ndarray]:
        from PIL import Image  # pylint: disable=import-outside-toplevel
        size = (self.image_size, self.image_size)
        batch = np.stack([np.asarray(image.resize(size, Image.Resampling.BILINEAR), np.float32)
                          for image in images])
        x = (batch / 255.0 - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        sown_maps, activation_maps = self._forward(self.variables, jnp.asarray(x))
        chosen = sown_maps if sown_maps and self.source != "activation" else activation_maps
        return list(np.asarray(chosen[self.level]))


def _preprocessing(config: dict) -> tuple[tuple, tuple, int]:
    """(mean, std, training image size) of a saved run's dataset."""
    dataset_config = dict(config.get("dataset", {}))
    if dataset_config.get("name") in ("cifar10", "cifar100"):
        return CIFAR_MEAN, CIFAR_STD, 32
    dataset = dataset_from_config(dataset_config)
    return dataset.mean, dataset.std, dataset.train_images.shape[1]


def evaluate(pairs: list[tuple[str, str, str]], model: ModelAttention | None, threshold: float | None,
             top_fraction: float | None, batch_size: int) -> dict[str, float]:
    """Jaccard index per image stem."""
    scores = {}
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        images = [read_image(image_path, "RGB") for _, image_path, _ in chunk]
        masks = [np.asarray(read_image(mask_path, "L")) > 0 for _, _, mask_path in chunk]
        if model is None:
            maps = [np.asarray(color_contrast_saliency(np.asarray(image, np.float32))) for image in images]
        else:
            maps = model.maps(images)
        for (stem, image_path, mask_path), image, attention, mask in zip(chunk, images, maps, masks):
            if image.size != (mask.shape[1], mask.shape[0]):
                logging.warning("%s is %dx%d, its mask %dx%d: scoring at the mask's size", image_path,
                                image.size[0], image.size[1], mask.shape[1], mask.shape[0])
            scores[stem] = float(segmentation_jaccard(attention, mask, threshold=threshold,
                                                      top_fraction=top_fraction))
    return scores


