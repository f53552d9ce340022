"""``python -m at_jax.import_timm --model=NAME --weights=FILE --workdir=DIR``.

NAME is one of timm's ``vit_tiny_patch16_224``, ``deit_small_patch16_224``, ``convnext_atto``,
``convnext_tiny``, ``resnet18``, ``resnet50`` (at_jax's ``vit-ti/16``, ``vit-s/16``, ``convnext-atto``,
``convnext-tiny``, ``resnet18``, ``resnet50``); FILE its state dict: ``.safetensors`` (read with the
``safetensors`` package, no torch needed) or ``.pth`` / ``.bin`` (read with torch, ``weights_only=True``:
a pickle that would run code is refused; timm itself is not needed). Writes a finished-run workdir:
``config.json`` (model, class count from the head's shape, the normalisation and input size of timm's
default pretrained tag under ``dataset``), one checkpoint, ``summary.json``; it works as
``--config.teacher.workdir``, ``--config.init.workdir`` and with ``at_jax.load_model(DIR)``. Inputs are
NHWC, ``(x / 255 - mean) / std`` with the recorded mean and std (0.5 for ``vit_tiny_patch16_224``,
ImageNet's for the others). Bad input (another architecture, missing, extra or mis-shaped keys, a
truncated or foreign file, a code-running pickle, an existing run in DIR) ends with one line
``at_jax: error: ...``, exit 2, and nothing written.
"""
from __future__ import annotations

import sys

from absl import app, flags

from at_jax.cli import check_arguments, configure_logging, parse_flags, user_errors

# Stated here too (at_jax.training.timm_import.TIMM_MODELS is the table) so that --help needs no jax.
MODELS = ("vit_tiny_patch16_224", "deit_small_patch16_224", "convnext_atto", "convnext_tiny", "resnet18", "resnet50")

FLAGS = flags.FLAGS
flags.DEFINE_enum("model", None, MODELS, "The timm model name of --weights.")
flags.DEFINE_string("weights", None, "A timm state dict: model.safetensors, pytorch_model.bin or a .pth file.")
flags.DEFINE_string("workdir", None, "The run directory to write (must not hold a run).")


def main(argv: list[str]) -> None:
    check_arguments(argv, ("model", "weights", "workdir"))
    configure_logging()
    from at_jax.training.timm_import import import_timm  # pylint: disable=import-outside-toplevel
    with user_errors():
        summary = import_timm(FLAGS.model, FLAGS.weights, FLAGS.workdir)
    print(f"imported {FLAGS.model} as {summary['model']} ({summary['num_classes']} classes, "
          f"{summary['parameters']:,} parameters) into {FLAGS.workdir}")


def run() -> None:
    app.run(main, argv=sys.argv, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
