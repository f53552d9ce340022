"""Generated image data in the formats real datasets use: an ImageNet-style folder of JPEGs of varied sizes
(with a grayscale and a CMYK JPEG and PNGs, one with alpha, among them)."""
import pathlib

import numpy as np
from PIL import Image

#: (PIL mode, file suffix) of the odd images placed first in every class folder.
ODD_IMAGES = (("L", ".JPEG"), ("CMYK", ".JPEG"), ("RGB", ".png"), ("RGBA", ".png"))


def random_image(rng: np.random.Generator, mode: str = "RGB", size_range=(24, 96)) -> Image.Image:
    """Smooth random colours (so that JPEG keeps them) of a random size, in PIL ``mode``."""
    width, height = (int(s) for s in rng.integers(*size_range, 2))
    coarse = rng.integers(0, 256, (max(2, height // 8), max(2, width // 8), 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR)
    return image.convert(mode) if mode != "RGB" else image


def write_image_folder(root, classes=("ant", "bee", "cat"), train_per_class=8, val_per_class=3, seed=0,
                       size_range=(24, 96)) -> pathlib.Path:
    """``root/train/<class>/*`` and ``root/val/<class>/*``: mostly RGB JPEGs, the odd images first."""
    root, rng = pathlib.Path(root), np.random.default_rng(seed)
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for name in classes:
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for index in range(count):
                mode, suffix = ODD_IMAGES[index] if index < len(ODD_IMAGES) and split == "train" else ("RGB", ".JPEG")
                random_image(rng, mode, size_range).save(root / split / name / f"{index:04d}{suffix}")
    return root
