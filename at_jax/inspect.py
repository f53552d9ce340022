"""``python -m at_jax.inspect --model=NAME [--image-size=S] [--num-classes=N] [--channels=C] [--config=FILE]``.

Prints one line per tappable layer of a model: its ``'/'``-joined flax module path (what ``loss.at_layers``
takes), the output shape for one image as a tuple, and whether attention transfer can use it (``at: yes`` for
NHWC activations and ``(N, T, D)`` tokens on a patch grid), e.g. ``group2_block0  (1, 4, 4, 64)  at: yes``.
Nothing is computed: the forward pass is evaluated on shapes only. ``--config=FILE`` first runs the file that
registers a user's model (a config file), so its name is known.
"""
from __future__ import annotations

import sys

from absl import app, flags

from at_jax.cli import fail, parse_flags, user_errors

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "A model name (at_jax.models.available(), or one your --config registers).")
flags.DEFINE_integer("image-size", 32, "Input height and width.")
flags.DEFINE_integer("num-classes", 10, "Classes of the model's head.")
flags.DEFINE_integer("channels", 3, "Input channels (1 for the embedded MNIST task).")
flags.DEFINE_string("config", None, "A Python file (e.g. a config file) that registers models.")


def format_layers(layers: list[tuple[str, tuple[int, ...]]]) -> str:
    """The listing: path, shape, ``at: yes|no``, in aligned columns."""
    from at_jax.models.tap import usable_for_at  # pylint: disable=import-outside-toplevel

    path_width = max([len(path) for path, _ in layers] + [4])
    shape_width = max([len(str(shape)) for _, shape in layers] + [5])
    return "\n".join(f"{path:<{path_width}}  {str(shape):<{shape_width}}  at: "
                     f"{'yes' if usable_for_at(shape) else 'no'}" for path, shape in layers)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        fail(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.model:
        fail("--model is required (e.g. --model=wrn-16-1)")
    size, num_classes = FLAGS["image-size"].value, FLAGS["num-classes"].value
    if min(size, num_classes, FLAGS.channels) < 1:
        fail("--image-size, --num-classes and --channels must be positive")
    # pylint: disable=import-outside-toplevel
    from at_jax import models
    from at_jax.models.tap import tappable_layers

    with user_errors():
        if FLAGS.config:
            models.registry.load_source(FLAGS.config)
        model = models.create(FLAGS.model, num_classes)
        try:
            layers = tappable_layers(model, (1, size, size, FLAGS.channels))
        except (ValueError, TypeError) as error:
            fail(f"{FLAGS.model} does not run on {size}x{size}x{FLAGS.channels} "
                 f"inputs: {str(error).splitlines()[0]}")
    print(format_layers(layers))


def run() -> None:
    app.run(main, argv=sys.argv, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
