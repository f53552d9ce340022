"""``python -m at_jax.compile_for --topology=v5e:4x4 [--num-slices=N] --config=configs/NAME.py[:ARGS]
[--config.key=value ...] [--json] [--find-max-batch]``.

Builds the run exactly as ``python -m at_jax.train`` would on that TPU topology (the same model, objective,
state, mesh and shardings; the config's global batch split over the topology's devices) from shapes alone,
compiles its train call and eval step with XLA's TPU compiler on this machine, and prints per chip: memory
needed against the chip's, FLOPs and bytes per step and per image, the step's collectives and the compile
time (:mod:`at_jax.planning`). A run that does not fit ends with one line and exit code 2; a crash of XLA's
TPU compiler with one line naming it and exit code 1. Needs libtpu:
``pip install -e ".[tpu-compile]"``; no TPU, no dataset on disk and no platform variable.
"""
from __future__ import annotations

import dataclasses
import json
import sys

from absl import app, flags
from ml_collections import config_flags

from at_jax.cli import configure_logging, fail, parse_flags, user_errors, with_default_config

FLAGS = flags.FLAGS
flags.DEFINE_string("topology", None, "A TPU topology: v5e:2x2, v5p:2x2x1, v6e:16x16, v4:2x2x1, ...")
flags.DEFINE_integer("num-slices", 1, "Slices of that topology joined by the data-centre network.")
flags.DEFINE_boolean("json", False, "Print one JSON object (for machines) instead of the text report.")
flags.DEFINE_boolean("find-max-batch", False, "Also find the largest per-chip batch that fits (several compiles).")
flags.DEFINE_integer("batch-granularity", 8, "--find-max-batch tries multiples of this per chip.")
flags.DEFINE_integer("num-train", 0, "Training examples, for a dataset whose size is not known without its files.")
flags.DEFINE_integer("num-eval", 0, "Eval examples, likewise.")
flags.DEFINE_integer("num-classes", 0, "Classes, likewise.")
config_flags.DEFINE_config_file("config", None, "Config file (get_config()); default: the embedded default.",
                                lock_config=True)


def compiled_report(config, described, counts: dict):
    """The run's report; with ``--find-max-batch`` the largest per-chip batch too (also when the config's own
    batch does not fit: the one-line error then names it)."""
    # pylint: disable=import-outside-toplevel
    from at_jax.planning.compiled import OutOfMemory
    from at_jax.planning.plan import compile_run, search_max_batch

    find_max, granularity = FLAGS["find-max-batch"].value, FLAGS["batch-granularity"].value
    try:
        report = compile_run(config, described, counts)
    except OutOfMemory as error:
        if not find_max:
            raise
        found = search_max_batch(config, described, None, counts, granularity)
        raise OutOfMemory(f"{error}; the largest batch that fits: {found['per_chip']} per device (global "
                          f"{found['global']})", error.needed, error.capacity) from None
    if find_max:
        report = dataclasses.replace(report, max_batch=search_max_batch(config, described, report, counts,
                                                                        granularity))
    return report


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        fail(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.topology:
        fail("--topology is required (e.g. --topology=v5e:2x2)")
    configure_logging()
    from at_jax.planning import topology  # pylint: disable=import-outside-toplevel
    topology.quiet_libtpu()   # before JAX starts a backend
    from at_jax.planning.compiled import CompilerFailure  # pylint: disable=import-outside-toplevel
    from at_jax.planning.report import format_report, refusal  # pylint: disable=import-outside-toplevel

    counts = {key: FLAGS[key.replace("_", "-")].value for key in ("num_train", "num_eval", "num_classes")}
    with user_errors():
        described = topology.describe(FLAGS.topology, FLAGS["num-slices"].value)
        try:
            report = compiled_report(FLAGS.config, described, counts)
        except CompilerFailure as failure:     # not the user's doing: exit 1, as a compiler crash
            fail(failure, code=1)
    print(json.dumps(report.as_dict(), indent=1) if FLAGS.json else format_report(report))
    if not report.fits:
        fail(refusal(report))


def run() -> None:
    """The command, compiled in a child process so that a crash of libtpu ends it in one line
    (:mod:`at_jax.planning.crash_guard`)."""
    from at_jax.planning import crash_guard  # pylint: disable=import-outside-toplevel
    if crash_guard.in_child():
        app.run(main, argv=with_default_config(sys.argv), flags_parser=parse_flags)
    code, crash = crash_guard.run_in_child([sys.executable, "-m", "at_jax.compile_for", *sys.argv[1:]])
    if crash:
        fail(crash, code=1)
    sys.exit(code)


if __name__ == "__main__":
    run()
