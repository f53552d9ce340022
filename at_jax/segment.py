"""``python -m at_jax.segment --images=DIR --masks=DIR [--workdir=RUN] [--threshold=T | --top_fraction=F]``.

Weakly supervised segmentation (see :mod:`at_jax.segmentation`): every image in ``--images`` is
paired with the mask of the same file stem in ``--masks`` (e.g. ``cat.jpg`` with ``cat.png``; nonzero
mask pixels are foreground). With ``--workdir`` (a trained at_jax run, e.g. an LTPA model) the image
is resized to the run's training size, normalised with its dataset's mean/std and the attention map
of ``--level`` is taken: the maps the model sows (LTPA) or, for other models or ``--source=activation``,
the activation attention map mean_c(f**2) of feature ``--level``. Without ``--workdir`` the colour
contrast saliency baseline is used. The map is upsampled to the mask's size, binarised (default:
min-max threshold 0.5) and scored; the mean Jaccard index is printed. Bad input ends with one line
``at_jax: error: ...`` and exit code 2.
"""
from __future__ import annotations

import os
import sys

import numpy as np
from absl import app, flags, logging

from at_jax.cli import fail, parse_flags

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".ppm")
SOURCES = ("auto", "ltpa", "activation")

FLAGS = flags.FLAGS
flags.DEFINE_string("images", None, "Folder of images.")
flags.DEFINE_string("masks", None, "Folder of binary masks (PNG), matched to images by file stem.")
flags.DEFINE_string("workdir", None, "A trained at_jax run; omit for the colour-contrast saliency baseline.")
flags.DEFINE_integer("level", 0, "Which attention map (index into the model's maps or features; -1 = last).")
flags.DEFINE_enum("source", "auto", SOURCES, "auto: the maps the model sows, else activation attention.")
flags.DEFINE_float("threshold", None, "Foreground where the min-max normalised map >= threshold.")
flags.DEFINE_float("top_fraction", None, "Foreground = this fraction of pixels with the largest values.")
flags.DEFINE_integer("image_size", 0, "Model input size; 0 = the run's training image size.")
flags.DEFINE_integer("batch_size", 32, "Images per forward pass.")
flags.DEFINE_bool("per_image", False, "Also print each image's Jaccard index.")


class SegmentError(ValueError):
    """Input the user can fix."""


def _images_by_stem(folder: str) -> dict[str, str]:
    return {os.path.splitext(name)[0]: os.path.join(folder, name) for name in sorted(os.listdir(folder))
            if name.lower().endswith(IMAGE_EXTENSIONS)}


def pair_files(image_dir: str, mask_dir: str) -> list[tuple[str, str, str]]:
    """``(stem, image_path, mask_path)`` for each image, sorted by stem; raises if any mask is missing."""
    for name, folder in (("--images", image_dir), ("--masks", mask_dir)):
        if not folder or not os.path.isdir(folder):
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
        with Image.open(path) as image:
            return image.convert(mode)
    except (OSError, UnidentifiedImageError) as error:
        raise SegmentError(f"cannot read {path}: {str(error).splitlines()[0]}") from None


class ModelAttention:
    """Attention maps of a trained run: ``maps(images uint8 list) -> list of (h, w) arrays``."""

    def __init__(self, workdir: str, level: int, source: str, image_size: int):
        # pylint: disable=import-outside-toplevel
        import jax
        import jax.numpy as jnp

        from at_jax import models
        from at_jax.attention import attention_map
        from at_jax.checkpoint import load_run
        from at_jax.models import cra, vgg_att  # noqa: F401  (registers their names)

        run = load_run(workdir)
        config = run.config
        if "model" not in config or "num_classes" not in config:
            raise SegmentError(f"{workdir}/config.json names no model or class count")
        self.model = models.create(config["model"], int(config["num_classes"]))
        self.variables = {"params": run.params}
        if run.batch_stats:
            self.variables["batch_stats"] = run.batch_stats
        self.mean, self.std, default_size = _preprocessing(config)
        self.image_size = image_size or default_size
        self.level, self.source, self.name = level, source, config["model"]

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
        self._jnp = jnp

    def maps(self, images: list) -> list[np.ndarray]:
        from PIL import Image  # pylint: disable=import-outside-toplevel
        size = (self.image_size, self.image_size)
        batch = np.stack([np.asarray(image.resize(size, Image.Resampling.BILINEAR), np.float32)
                          for image in images])
        x = (batch / 255.0 - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        sown_maps, activation_maps = self._forward(self.variables, self._jnp.asarray(x))
        chosen = sown_maps if sown_maps and self.source != "activation" else activation_maps
        return list(np.asarray(chosen[self.level]))


def _preprocessing(config: dict) -> tuple[tuple, tuple, int]:
    """(mean, std, training image size) of a saved run's dataset."""
    from at_jax.data import CIFAR_MEAN, CIFAR_STD, load_dataset  # pylint: disable=import-outside-toplevel
    dataset_config = dict(config.get("dataset", {}))
    name = dataset_config.pop("name", "")
    if name in ("cifar10", "cifar100"):
        return CIFAR_MEAN, CIFAR_STD, 32
    data_dir = dataset_config.pop("data_dir", "") or None
    seed = dataset_config.pop("seed", 0)
    dataset = load_dataset(name, os.path.expanduser(data_dir) if data_dir else None, seed=seed,
                           **dataset_config)
    return dataset.mean, dataset.std, dataset.train_images.shape[1]


def evaluate(pairs: list[tuple[str, str, str]], model: ModelAttention | None, threshold: float | None,
             top_fraction: float | None, batch_size: int) -> dict[str, float]:
    """Jaccard index per image stem."""
    # pylint: disable-next=import-outside-toplevel
    from at_jax.segmentation import color_contrast_saliency, segmentation_jaccard
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


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        fail(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.ERROR)
    threshold, top_fraction = FLAGS.threshold, FLAGS.top_fraction
    if threshold is not None and top_fraction is not None:
        fail("give at most one of --threshold and --top_fraction")
    if threshold is None and top_fraction is None:
        threshold = 0.5
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        fail(f"--threshold must be in [0, 1], got {threshold}")
    if top_fraction is not None and not 0.0 < top_fraction <= 1.0:
        fail(f"--top_fraction must be in (0, 1], got {top_fraction}")
    if FLAGS.batch_size < 1 or FLAGS.image_size < 0:
        fail("--batch_size must be >= 1 and --image_size >= 0")
    try:
        pairs = pair_files(FLAGS.images, FLAGS.masks)
    except SegmentError as error:
        fail(error)
    # Imported here so that input errors come back before JAX starts.
    from at_jax.checkpoint import CheckpointError  # pylint: disable=import-outside-toplevel
    from at_jax.data import DatasetError  # pylint: disable=import-outside-toplevel

    try:
        model = (ModelAttention(FLAGS.workdir, FLAGS.level, FLAGS.source, FLAGS.image_size)
                 if FLAGS.workdir else None)
        scores = evaluate(pairs, model, threshold, top_fraction, FLAGS.batch_size)
    except (SegmentError, CheckpointError, DatasetError, ValueError) as error:
        fail(error)
    if FLAGS.per_image:
        for stem, score in scores.items():
            print(f"{stem}\t{score:.4f}")
    source = f"{model.name} map {FLAGS.level}" if model else "colour-contrast saliency"
    print(f"mean Jaccard {np.mean(list(scores.values())):.4f} over {len(scores)} images ({source})")


def run() -> None:
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
