"""The embedded demo task: cluttered digits, built offline from scikit-learn's 8x8 digits.

Each example is a 32x32 RGB canvas holding one handwritten digit from
`sklearn.datasets.load_digits` (1797 real 8x8 scans, values 0..16), upscaled 2x to 16x16 and
placed at a uniformly random position. The label is that digit. Around and over it lie
`num_fragments` fragments: random rectangular crops (3..5 source pixels a side) of other digits,
upscaled the same way, at lower contrast, anywhere on the canvas (also half outside it). Every
layer has its own colour; the background is a dim random colour plus Gaussian noise. Layers are
composited by a per-pixel maximum:

    canvas = clip(max(background, main * a * colour, fragment_k * b_k * colour_k) + noise, 0, 1)

with a ~ U(0.7, 1.0) for the digit and b_k ~ U(0.25, 0.5) for the fragments. A model has to find
the bright complete digit among dimmer partial strokes, so *where to look* matters, which is the
point of attention transfer. Horizontal flips are not label-preserving here (flip=False).

Train and test use disjoint source scans (a seeded 80/20 split of the 1797), and fragments come
from the same side of the split as the example, so the test set holds only unseen handwriting.
Everything is deterministic given `seed`.
"""

from __future__ import annotations

import numpy as np

from at_jax.data.dataset import Dataset, DatasetError, channel_mean_std

CANVAS = 32          # default output height and width
SCALE = 2            # default upscaling of the 8x8 source digits
TEST_FRACTION = 0.2  # share of source scans reserved for the test split


def _load_source_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 scikit-learn digit scans as float32 (N, 8, 8) in [0, 1] and int32 labels."""
    from sklearn.datasets import load_digits  # shipped with scikit-learn: no download

    digits = load_digits()
    return (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int32)


def _upscale(images: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling of (N, 8, 8) by ``scale`` on both spatial axes."""
    return images.repeat(scale, axis=1).repeat(scale, axis=2)


def _random_colours(rng: np.random.Generator, count: int) -> np.ndarray:
    """(count, 3) RGB colours with channels in [0.25, 1] and the brightest channel equal to 1."""
    colours = rng.uniform(0.25, 1.0, size=(count, 3))
    return (colours / colours.max(axis=1, keepdims=True)).astype(np.float32)


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint8 in 0..255, rounded to nearest."""
    return (np.clip(values, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _paste_max(canvas: np.ndarray, layer: np.ndarray, top: np.ndarray, left: np.ndarray) -> None:
    """canvas[n, top+i, left+j, :] = max(canvas[...], layer[n, i, j, :]) for every example n."""
    count, side, _, channels = canvas.shape
    height, width = layer.shape[1:3]
    rows = top[:, None, None] + np.arange(height)[None, :, None]
    cols = left[:, None, None] + np.arange(width)[None, None, :]
    pixel = ((np.arange(count)[:, None, None] * side + rows) * side + cols).reshape(-1)
    flat = canvas.reshape(-1, channels)
    flat[pixel] = np.maximum(flat[pixel], layer.reshape(-1, channels))


def _render(rng: np.random.Generator, sources: np.ndarray, main: np.ndarray,
            num_fragments: int, noise_std: float, canvas_size: int = CANVAS,
            scale: int = SCALE) -> np.ndarray:
    """Render uint8 (len(main), canvas_size, canvas_size, 3) canvases whose main digit is sources[main]."""
    count = main.shape[0]
    digit = 8 * scale
    margin = digit // 2  # fragments may hang up to half outside the canvas
    side = canvas_size + 2 * margin
    background = rng.uniform(0.0, 0.15, size=(count, 1, 1, 3))
    # composited in uint8 (value * 255): a quarter of the memory traffic of float32
    canvas = np.broadcast_to(_to_uint8(background), (count, side, side, 3)).copy()

    for _ in range(num_fragments):
        fragment = sources[rng.integers(0, sources.shape[0], size=count)]
        height = rng.integers(3, 6, size=count)
        width = rng.integers(3, 6, size=count)
        top = rng.integers(0, 8 - height + 1)
        left = rng.integers(0, 8 - width + 1)
        grid = np.arange(8)
        rows_in = (grid[None] >= top[:, None]) & (grid[None] < (top + height)[:, None])
        cols_in = (grid[None] >= left[:, None]) & (grid[None] < (left + width)[:, None])
        fragment = fragment * (rows_in[:, :, None] & cols_in[:, None, :])
        contrast = rng.uniform(0.25, 0.5, size=(count, 1, 1, 1)).astype(np.float32)
        layer = _upscale(fragment, scale)[..., None] * contrast * _random_colours(rng, count)[:, None, None]
        _paste_max(canvas, _to_uint8(layer), rng.integers(0, side - digit + 1, size=count),
                   rng.integers(0, side - digit + 1, size=count))

    contrast = rng.uniform(0.7, 1.0, size=(count, 1, 1, 1)).astype(np.float32)
    layer = _upscale(sources[main], scale)[..., None] * contrast * _random_colours(rng, count)[:, None, None]
    _paste_max(canvas, _to_uint8(layer), margin + rng.integers(0, canvas_size - digit + 1, size=count),
               margin + rng.integers(0, canvas_size - digit + 1, size=count))

    canvas = canvas[:, margin:margin + canvas_size, margin:margin + canvas_size]
    noise = rng.standard_normal(size=canvas.shape, dtype=np.float32)
    noise *= noise_std * 255.0
    noise += canvas
    noise += 0.5  # round half up on the truncating cast below
    np.clip(noise, 0.0, 255.0, out=noise)
    return noise.astype(np.uint8)


def _draw_main(rng: np.random.Generator, num_sources: int, count: int) -> np.ndarray:
    """Indices of main digits: every source scan used about equally often, in random order."""
    repeats = -(-count // num_sources)
    return np.concatenate([rng.permutation(num_sources) for _ in range(repeats)])[:count]


def _split_scans(rng: np.random.Generator, num_scans: int) -> dict[str, np.ndarray]:
    """A random partition of scan indices into disjoint "train" and "test" sets."""
    order = rng.permutation(num_scans)
    num_test_scans = int(round(TEST_FRACTION * num_scans))
    return {"train": order[num_test_scans:], "test": order[:num_test_scans]}


def generate_digits(seed: int = 0, *, num_train: int = 5000, num_test: int = 1000,
                    num_fragments: int = 3, noise_std: float = 0.05, canvas_size: int = CANVAS,
                    scale: int = SCALE) -> tuple[Dataset, dict[str, np.ndarray]]:
    """The cluttered-digits task (module docstring) and, per split, the scan index of each example.

    Returns `(dataset, scans)` where `scans[split][n]` indexes `sklearn.datasets.load_digits()`
    and names the main digit of example n. Mean and std are measured on the train split.
    """
    if num_train < 1 or num_test < 1:
        raise DatasetError(f"digits: num_train and num_test must be >= 1, got {num_train}, {num_test}")
    if num_fragments < 0 or noise_std < 0:
        raise DatasetError("digits: num_fragments and noise_std must be >= 0")
    if scale < 1 or canvas_size < 8 * scale:
        raise DatasetError(f"digits: need scale >= 1 and canvas_size >= 8 * scale, got {canvas_size}, {scale}")
    images, labels = _load_source_digits()
    rng = np.random.default_rng(seed)
    split_scans = _split_scans(rng, images.shape[0])

    arrays, scans = {}, {}
    for split, count in (("train", num_train), ("test", num_test)):
        pool = split_scans[split]
        main = _draw_main(rng, pool.shape[0], count)
        arrays[f"{split}_images"] = _render(rng, images[pool], main, num_fragments, noise_std,
                                            canvas_size, scale)
        arrays[f"{split}_labels"] = labels[pool][main]
        scans[split] = pool[main]

    mean, std = channel_mean_std(arrays["train_images"])
    dataset = Dataset(name="digits", num_classes=10, mean=mean, std=std, pad=2, flip=False, **arrays)
    return dataset, scans


def load_digits_dataset(seed: int = 0, *, num_train: int = 5000, num_test: int = 1000,
                        num_fragments: int = 3, noise_std: float = 0.05, canvas_size: int = CANVAS,
                        scale: int = SCALE) -> Dataset:
    """The cluttered-digits dataset of `generate_digits`, without the scan indices."""
    return generate_digits(seed, num_train=num_train, num_test=num_test, num_fragments=num_fragments,
                           noise_std=noise_std, canvas_size=canvas_size, scale=scale)[0]
