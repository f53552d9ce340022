"""``python -m at_jax.compile_for --topology=v5e:4x4 [--num-slices=N] --config=configs/NAME.py[:ARGS]
[--config.key=value ...] [--json] [--find-max-batch]``.

Builds the run exactly as ``python -m at_jax.train`` would on that TPU topology (the same model, objective,
state, mesh and shardings; the config's global batch split over the topology's devices) from shapes alone,
compiles its train call and eval step with XLA's TPU compiler on this machine, and prints per chip: memory
needed against the chip's, FLOPs and bytes per step and per image, the step's collectives and the compile
time (:mod:`at_jax.planning`). A run that does not fit ends with one line and exit code 2. Needs libtpu:
``pip install -e ".[tpu-compile]"``; no TPU, no dataset on disk and no platform variable.
"""
from __future__ import annotations

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


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        fail(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.topology:
        fail("--topology is required (e.g. --topology=v5e:2x2)")
    configure_logging()
    # pylint: disable=import-outside-toplevel
    from at_jax.planning import topology
    topology.quiet_libtpu()   # before JAX starts a backend
    from at_jax.planning.compiled import OutOfMemory
    from at_jax.planning.plan import compile_run, search_max_batch
    from at_jax.planning.report import format_report, refusal

    counts = {key: FLAGS[key.replace("_", "-")].value for key in ("num_train", "num_eval", "num_classes")}
    with user_errors():
        described = topology.describe(FLAGS.topology, FLAGS["num-slices"].value)
        try:
            report = compile_run(FLAGS.config, described, counts)
        except OutOfMemory as error:
            if not FLAGS["find-max-batch"].value:
                raise
            report, first_error = None, error
        if FLAGS["find-max-batch"].value:
            found = search_max_batch(FLAGS.config, described, report, counts, FLAGS["batch-granularity"].value)
            if report is None:
                print(json.dumps({"fits": False, "max_batch": found}) if FLAGS.json else
                      f"the config's batch does not fit ({first_error}); largest that fits: {found['per_chip']} per "
                      f"device (global {found['global']})")
                fail(first_error)
            report = type(report)(**{**report.__dict__, "max_batch": found})
    print(json.dumps(report.as_dict(), indent=1) if FLAGS.json else format_report(report))
    if not report.fits:
        fail(refusal(report))


def run() -> None:
    app.run(main, argv=with_default_config(sys.argv), flags_parser=parse_flags)


if __name__ == "__main__":
    run()
