"""``python -m at_jax.experiment --config=configs/experiments/NAME.py --workdir=DIR [--config.key=value ...]``.

Trains the teacher once (``DIR/teacher``), then the student with each method of the experiment over its
seeds (``DIR/<method>/seed_<s>``), and writes ``DIR/results.json`` and ``DIR/results.md`` (the paper's
Table 1 form). Re-running the same command skips finished runs and resumes a partial one. Overrides reach
the experiment's keys (``--config.seeds=1``, ``--config.method_order=none,at``) and its run config
(``--config.base.num_train_steps=50``). User mistakes end with one line ``at_jax: error: ...``, exit 2.
"""
from __future__ import annotations

import sys

from absl import app, flags
from ml_collections import config_flags

from at_jax.cli import configure_logging, fail, parse_flags, user_errors

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Experiment directory: teacher/, <method>/seed_<s>/, results.*")
config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/experiments/NAME.py).",
                                lock_config=True)


def announce(index: int, count: int, run, done: bool) -> None:
    state = "finished earlier, kept" if done else f"training {run.config.model} in {run.workdir}"
    print(f"[{index + 1}/{count}] {run.name}: {state}", flush=True)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        fail(f"unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.config is None:
        fail("--config is required (an experiment config, e.g. configs/experiments/digits.py)")
    if not FLAGS.workdir:
        fail("--workdir is required")
    config = FLAGS.config
    for key in ("base", "methods", "method_order", "seeds"):
        if key not in config:
            fail(f"{key!r} is missing from the config: --config must be an experiment config "
                 "(configs/experiments/NAME.py), not a run config")
    configure_logging()
    from at_jax.training.cpu_defaults import apply_xla_cpu_flags  # pylint: disable=import-outside-toplevel
    apply_xla_cpu_flags()  # before JAX starts a backend
    # Imported here so that flag errors come back before JAX starts.
    from at_jax.experiments import report  # pylint: disable=import-outside-toplevel
    from at_jax.experiments.run import run_experiment  # pylint: disable=import-outside-toplevel
    from at_jax.training import sharding  # pylint: disable=import-outside-toplevel

    with user_errors(interrupted="interrupted; re-run the same command to resume"):
        sharding.initialize_distributed()
        results = run_experiment(config, FLAGS.workdir, on_run=announce)
    sys.stdout.write("\n" + report.format_markdown(results))


def run() -> None:
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
