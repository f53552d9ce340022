"""Figures from trained runs (PNG, headless matplotlib).

Attention maps (the paper's Figures 4 and 6), student beside teacher::

    python -m at_jax.visualize --workdir=DIR [--teacher=DIR | --no-teacher] --out=FILE.png [--num-images=4]

Without ``--teacher`` the teacher the run was trained with (its config's ``teacher.workdir``) is shown when
it exists. Training curves of one or several runs on shared axes (the paper's Figure 7)::

    python -m at_jax.visualize curves --workdir=DIR [--workdir=DIR2 ...] --out=FILE.png [--metric=NAME ...]

A loss-weight sweep (a ``parallel_sweep`` job, e.g. with ``parallel_seeds``): error against the value, median
and range over seeds::

    python -m at_jax.visualize sweep --workdir=JOB_DIR --out=FILE.png

Attention maps over training (a run trained with ``--config.metrics.attention_every=K``): rows are steps,
columns the probe image, then each AT pair's student | teacher maps::

    python -m at_jax.visualize drift --workdir=RUN --out=FILE.png [--image=0] [--max-rows=8]

User mistakes end with one line ``at_jax: error: ...`` on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import sys

from at_jax.cli import configure_logging, fail, user_errors


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, no usage dump
        fail(message)


def attention_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m at_jax.visualize", description="Attention maps of a trained run.")
    parser.add_argument("--workdir", required=True, help="a trained run (the student)")
    parser.add_argument("--teacher", default=None, help="a trained teacher run (default: the run's teacher)")
    parser.add_argument("--no-teacher", action="store_true", help="show the student only")
    parser.add_argument("--out", required=True, help="the PNG to write")
    parser.add_argument("--num-images", type=int, default=4, help="test images, one row each")
    parser.add_argument("--start", type=int, default=0, help="index of the first test image")
    parser.add_argument("--dpi", type=int, default=100)
    return parser


def curves_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m at_jax.visualize curves", description="Training curves of runs.")
    parser.add_argument("--workdir", action="append", required=True, help="a run; repeat for several")
    parser.add_argument("--out", required=True, help="the PNG to write")
    parser.add_argument("--metric", action="append", default=[],
                        help="a metrics.jsonl key to plot (repeatable; default: losses, accuracy, lr)")
    parser.add_argument("--title", default="")
    parser.add_argument("--dpi", type=int, default=100)
    return parser


def sweep_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m at_jax.visualize sweep", description="Error against a swept loss weight.")
    parser.add_argument("--workdir", required=True, help="the sweep job's workdir")
    parser.add_argument("--out", required=True, help="the PNG to write")
    parser.add_argument("--title", default="")
    parser.add_argument("--dpi", type=int, default=100)
    return parser


def drift_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m at_jax.visualize drift", description="Attention maps over training steps.")
    parser.add_argument("--workdir", required=True, help="a run trained with metrics.attention_every > 0")
    parser.add_argument("--out", required=True, help="the PNG to write")
    parser.add_argument("--image", type=int, default=0, help="index of the probe image")
    parser.add_argument("--max-rows", type=int, default=8, help="steps shown (evenly spread, first and last kept)")
    parser.add_argument("--dpi", type=int, default=100)
    return parser


def draw_attention(args: argparse.Namespace) -> tuple[int, int]:
    from at_jax.figures import attention_maps  # pylint: disable=import-outside-toplevel
    from at_jax.training.run_figures import load_trained_run  # pylint: disable=import-outside-toplevel

    student = load_trained_run(args.workdir)
    teacher_dir = None if args.no_teacher else (args.teacher or attention_maps.default_teacher_workdir(student))
    teacher = load_trained_run(teacher_dir) if teacher_dir else None
    return attention_maps.attention_figure(student, teacher, args.out, num_images=args.num_images,
                                           start=args.start, dpi=args.dpi)


def draw_curves(args: argparse.Namespace) -> tuple[int, int]:
    from at_jax.figures.curves import curves_figure  # pylint: disable=import-outside-toplevel

    return curves_figure(args.workdir, args.out, metrics=args.metric, dpi=args.dpi, title=args.title)


def draw_sweep(args: argparse.Namespace) -> tuple[int, int]:
    from at_jax.figures.sweep import sweep_figure  # pylint: disable=import-outside-toplevel

    return sweep_figure(args.workdir, args.out, dpi=args.dpi, title=args.title)


def draw_drift(args: argparse.Namespace) -> tuple[int, int]:
    from at_jax.figures.drift import drift_figure  # pylint: disable=import-outside-toplevel

    return drift_figure(args.workdir, args.out, image=args.image, max_rows=args.max_rows, dpi=args.dpi)


#: subcommand -> (parser, drawing function); no subcommand = attention maps.
SUBCOMMANDS = {"curves": (curves_parser, draw_curves), "sweep": (sweep_parser, draw_sweep),
               "drift": (drift_parser, draw_drift)}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    parser, draw = SUBCOMMANDS[command] if command else (attention_parser, draw_attention)
    args = parser().parse_args(argv[1:] if command else argv)
    if args.dpi < 10:
        fail(f"--dpi must be >= 10, got {args.dpi}")
    configure_logging()
    with user_errors():
        try:
            height, width = draw(args)
        except OSError as error:
            fail(f"cannot write {args.out}: {error}")
    print(f"wrote {args.out} ({width}x{height} px)")


if __name__ == "__main__":
    main()
