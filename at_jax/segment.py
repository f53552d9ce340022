"""``python -m at_jax.segment --images=DIR --masks=DIR [--workdir=RUN] [--threshold=T | --top_fraction=F]``.

Weakly supervised segmentation (see :mod:`at_jax.figures.segmentation`): every image in ``--images`` is
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

import numpy as np
from absl import app, flags

from at_jax.cli import configure_logging, fail, parse_flags, user_errors
from at_jax.figures.segment_folder import SOURCES, ModelAttention, evaluate, pair_files

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


def model_attention(workdir: str) -> ModelAttention:
    """The attention maps of the trained run in ``workdir``, as the flags ask."""
    from at_jax.training.checkpoint import load_run, model_from_config, variables_of  # pylint: disable=C0415

    run = load_run(workdir)
    return ModelAttention(model_from_config(run.config), variables_of(run), run.config, FLAGS.level, FLAGS.source,
                          FLAGS.image_size, workdir=workdir)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        fail(f"unexpected arguments: {' '.join(argv[1:])}")
    configure_logging()
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
    with user_errors():
        pairs = pair_files(FLAGS.images, FLAGS.masks)
        model = model_attention(FLAGS.workdir) if FLAGS.workdir else None
        scores = evaluate(pairs, model, threshold, top_fraction, FLAGS.batch_size)
    if FLAGS.per_image:
        for stem, score in scores.items():
            print(f"{stem}\t{score:.4f}")
    source = f"{model.name} map {FLAGS.level}" if model else "colour-contrast saliency"
    print(f"mean Jaccard {np.mean(list(scores.values())):.4f} over {len(scores)} images ({source})")


def run() -> None:
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
