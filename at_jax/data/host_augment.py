"""Host-side decoding and augmentation of large images (the streaming path's worker processes).

Train: torchvision's ``RandomResizedCrop`` (area fraction U(0.08, 1), log-uniform aspect ratio in [3/4, 4/3],
ten tries, then the centre crop of the clamped ratio) resized to ``size`` (bilinear) and a horizontal flip with
probability 1/2. Eval: the shorter side resized to ``size * 256 / 224``, then the centre ``size`` square.

JPEGs are decoded with PIL's DCT scaling (``Image.draft``): when the crop is at least twice the output size in
both directions, libjpeg decodes at 1/2, 1/4 or 1/8 of the resolution directly, which is most of the decoding
cost of a 224 crop from a full ImageNet photograph. The crop box is drawn on the full image first, so the
random draws (and the region seen) do not depend on the scaling. Grayscale, CMYK, palette and alpha images
become RGB. An unreadable image raises :class:`DatasetError` naming it.
"""
from __future__ import annotations

import io
import math

import numpy as np

from at_jax.data.dataset import DatasetError

SCALE = (0.08, 1.0)
RATIO = (3.0 / 4.0, 4.0 / 3.0)
EVAL_RESIZE_RATIO = 256.0 / 224.0


def random_resized_box(width: int, height: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(left, top, crop_width, crop_height) drawn as torchvision's ``RandomResizedCrop.get_params``."""
    area = width * height
    log_ratio = (math.log(RATIO[0]), math.log(RATIO[1]))
    for _ in range(10):
        target_area = area * rng.uniform(*SCALE)
        aspect = math.exp(rng.uniform(*log_ratio))
        crop_width = int(round(math.sqrt(target_area * aspect)))
        crop_height = int(round(math.sqrt(target_area / aspect)))
        if 0 < crop_width <= width and 0 < crop_height <= height:
            return (int(rng.integers(0, width - crop_width + 1)), int(rng.integers(0, height - crop_height + 1)),
                    crop_width, crop_height)
    in_ratio = width / height
    if in_ratio < RATIO[0]:
        crop_width, crop_height = width, int(round(width / RATIO[0]))
    elif in_ratio > RATIO[1]:
        crop_width, crop_height = int(round(height * RATIO[1])), height
    else:
        crop_width, crop_height = width, height
    return (width - crop_width) // 2, (height - crop_height) // 2, crop_width, crop_height


def open_image(encoded: bytes | np.ndarray, name: str):
    """A PIL image of ``encoded`` bytes (header read only; pixels are decoded on first use) or of a decoded
    uint8 array (H, W[, C]), as TFDS sources give."""
    from PIL import Image, UnidentifiedImageError  # pylint: disable=import-outside-toplevel
    try:
        if isinstance(encoded, np.ndarray):
            return Image.fromarray(encoded.squeeze(-1) if encoded.ndim == 3 and encoded.shape[-1] == 1 else encoded)
        return Image.open(io.BytesIO(encoded))
    except UnidentifiedImageError:
        raise DatasetError(f"cannot read image {name}: not an image file PIL can read; remove or replace it") from None
    except (OSError, ValueError) as error:
        raise DatasetError(f"cannot read image {name}: {_reason(error)}; remove or replace it") from None


def _reason(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _decoded(image, name: str, box: tuple[int, int, int, int], size: int):
    """``image`` decoded (at a reduced JPEG scale when the box allows) and cut to ``box``, as RGB."""
    left, top, width, height = box
    full_width = image.size[0]
    try:
        if image.format == "JPEG" and min(width, height) >= 2 * size:
            reduce = min(8, 2 ** int(math.log2(min(width, height) / size)))
            image.draft("RGB", (image.size[0] // reduce, image.size[1] // reduce))
        scale = image.size[0] / full_width
        if image.mode != "RGB":
            image = image.convert("RGBA").convert("RGB") if image.mode in ("P", "PA") else image.convert("RGB")
        return image.crop((int(left * scale), int(top * scale), max(int(left * scale) + 1, int((left + width) * scale)),
                           max(int(top * scale) + 1, int((top + height) * scale))))
    except (OSError, ValueError, SyntaxError) as error:
        raise DatasetError(f"cannot decode image {name}: {_reason(error)}; remove or replace it") from None


def train_image(encoded: bytes | np.ndarray, name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """RandomResizedCrop ``size`` + random flip of an encoded image, uint8 (size, size, 3)."""
    from PIL import Image  # pylint: disable=import-outside-toplevel
    image = open_image(encoded, name)
    box = random_resized_box(*image.size, rng)
    flip = rng.random() < 0.5
    crop = _decoded(image, name, box, size).resize((size, size), Image.Resampling.BILINEAR)
    pixels = np.asarray(crop, np.uint8)
    return pixels[:, ::-1] if flip else pixels


def eval_image(encoded: bytes | np.ndarray, name: str, size: int) -> np.ndarray:
    """The shorter side resized to ``size * 256 / 224``, then the centre ``size`` square, uint8 (size, size, 3)."""
    from PIL import Image  # pylint: disable=import-outside-toplevel
    image = open_image(encoded, name)
    width, height = image.size
    resize = max(size, int(round(size * EVAL_RESIZE_RATIO)))
    scale = resize / min(width, height)
    # the region of the original image that becomes the centre crop
    crop_width, crop_height = min(width, size / scale), min(height, size / scale)
    box = (int((width - crop_width) / 2), int((height - crop_height) / 2),
           max(1, int(round(crop_width))), max(1, int(round(crop_height))))
    crop = _decoded(image, name, box, size).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(crop, np.uint8)
