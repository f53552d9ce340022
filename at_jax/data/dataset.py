"""The in-memory image-classification dataset every loader returns, and its error type."""

from __future__ import annotations

import dataclasses

import numpy as np


from at_jax.errors import DatasetError  # noqa: E402  (re-exported: at_jax.data.DatasetError)


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Train and test splits held in host memory, NHWC uint8 images and int32 labels.

    `mean` and `std` are per channel in [0, 1] units (pixel / 255), so that the model input is
    `(images / 255 - mean) / std` (see `at_jax.data.augment.normalize`). `pad` is the recommended
    reflect padding for random crops and `flip` says whether horizontal flips keep the label.
    The arrays are made read-only: index them (which copies) rather than editing them in place.
    """

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pad: int
    flip: bool

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            images = getattr(self, f"{split}_images")
            labels = getattr(self, f"{split}_labels")
            if images.dtype != np.uint8 or images.ndim != 4:
                raise DatasetError(
                    f"{self.name}: {split} images must be uint8 (N, H, W, C), "
                    f"got {images.dtype} {images.shape}")
            if labels.dtype != np.int32 or labels.shape != (images.shape[0],):
                raise DatasetError(
                    f"{self.name}: {split} labels must be int32 ({images.shape[0]},), "
                    f"got {labels.dtype} {labels.shape}")
            if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
                raise DatasetError(
                    f"{self.name}: {split} labels must lie in [0, {self.num_classes}), "
                    f"got [{labels.min()}, {labels.max()}]")
            images.setflags(write=False)
            labels.setflags(write=False)
        if self.train_images.shape[1:] != self.test_images.shape[1:]:
            raise DatasetError(
                f"{self.name}: train and test images differ in shape: "
                f"{self.train_images.shape[1:]} vs {self.test_images.shape[1:]}")
        channels = self.train_images.shape[-1]
        if len(self.mean) != channels or len(self.std) != channels:
            raise DatasetError(f"{self.name}: mean/std need one value per channel ({channels})")

    @property
    def num_train(self) -> int:
        return len(self.train_labels)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one image."""
        return tuple(self.train_images.shape[1:])


def channel_mean_std(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 NHWC `images` in [0, 1] units.

    mean_c = E[x_c / 255], std_c = sqrt(E[(x_c / 255)^2] - mean_c^2), over all N, H, W.
    """
    channels = images.shape[-1]
    counts = np.stack([np.bincount(images[..., c].reshape(-1), minlength=256) for c in range(channels)])
    values = np.arange(256, dtype=np.float64) / 255.0
    total = counts.sum(axis=1)
    mean = counts @ values / total
    std = np.sqrt(np.maximum(counts @ values**2 / total - mean**2, 0.0))
    std = np.where(std > 0, std, 1.0)
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)
