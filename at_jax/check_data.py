"""``python -m at_jax.check_data DIR [--workers=N]``: every unreadable image of an image folder, before a run.

DIR is an image-folder dataset (``DIR/train/<class>/*``, ``DIR/val/<class>/*``) or one split folder
(``DIR/<class>/*``); the files are the ones the trainer would read (:mod:`at_jax.data.verify`). Progress goes to
stderr; each unreadable file is printed on stdout as ``PATH<TAB>REASON``, all of them, then the command ends
with ``at_jax: error: N of M image files unreadable; listed above`` and exit code 2. A clean folder prints
``M image files readable`` and exits 0. The same check runs before training with ``--config.dataset.verify=True``.
"""
from __future__ import annotations

import sys

from absl import app, flags

from at_jax.cli import configure_logging, fail, parse_flags, user_errors

FLAGS = flags.FLAGS
flags.DEFINE_integer("workers", 2, "Threads that read and decode files at once.")


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        fail("usage: python -m at_jax.check_data DIR [--workers=N] (one image folder)")
    if FLAGS.workers < 1:
        fail(f"--workers must be >= 1, got {FLAGS.workers}")
    configure_logging()
    from at_jax.data import verify  # pylint: disable=import-outside-toplevel
    from at_jax.training.metrics import Progress  # pylint: disable=import-outside-toplevel
    with user_errors():
        files = verify.image_files(argv[1])
        progress = Progress(len(files), label="check")
        unreadable = verify.find_unreadable(files, FLAGS.workers, progress=lambda done, _: progress.update(done),
                                            interval=0.5 if progress.is_terminal else 10.0)
        progress.close()
    for bad in unreadable:
        print(f"{bad.path}\t{bad.reason}")
    sys.stdout.flush()
    if unreadable:
        fail(f"{verify.summary(unreadable, len(files))}; listed above")
    print(f"{len(files)} image files readable")


def run() -> None:
    app.run(main, argv=sys.argv, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
