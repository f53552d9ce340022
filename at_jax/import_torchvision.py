"""``python -m at_jax.import_torchvision --arch=resnet18|34|50|101|152 --weights=FILE.pth --workdir=DIR``.

Reads a torchvision ResNet state dict with torch (``weights_only=True``: a pickle that would run code is
refused; torchvision itself is not needed) and writes a finished-run workdir: ``config.json`` (model, class
count, the ImageNet input normalisation it expects), one checkpoint, ``summary.json``. The result works as
``--config.teacher.workdir`` and with ``at_jax.load_model(DIR)``. Inputs must be normalised as for
torchvision: ``(x / 255 - mean) / std`` with ImageNet's mean (0.485, 0.456, 0.406) and std (0.229, 0.224,
0.225), NHWC. Bad input (another architecture, a truncated file, missing or extra keys, a code-running
pickle, an existing run in DIR) ends with one line ``at_jax: error: ...``, exit 2, and nothing written.
"""
from __future__ import annotations

import sys

from absl import app, flags

from at_jax.cli import check_arguments, configure_logging, parse_flags, user_errors

ARCHITECTURES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")

FLAGS = flags.FLAGS
flags.DEFINE_enum("arch", None, ARCHITECTURES, "The torchvision architecture of --weights.")
flags.DEFINE_string("weights", None, "A torchvision state dict (.pth), e.g. resnet18-f37072fd.pth.")
flags.DEFINE_string("workdir", None, "The run directory to write (must not hold a run).")


def main(argv: list[str]) -> None:
    check_arguments(argv, ("arch", "weights", "workdir"))
    configure_logging()
    from at_jax.training.torchvision_import import import_resnet  # pylint: disable=import-outside-toplevel
    with user_errors():
        summary = import_resnet(FLAGS.arch, FLAGS.weights, FLAGS.workdir)
    print(f"imported {summary['model']} ({summary['num_classes']} classes, {summary['parameters']:,} parameters) "
          f"into {FLAGS.workdir}")


def run() -> None:
    app.run(main, argv=sys.argv, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
