"""``python -m at_jax.train --config=configs/NAME.py[:ARGS] --workdir=DIR [--config.key=value ...]``.

Without ``--config`` it runs the embedded default (at_jax/default_config.py). User mistakes end with one
line ``at_jax: error: ...`` on stderr and exit code 2; nothing in an existing workdir is destroyed.
"""
from __future__ import annotations

import sys
import types

from absl import app, flags
from ml_collections import config_flags

from at_jax.cli import configure_logging, fail, parse_flags, user_errors, with_default_config



def define_flags(flag_values: flags.FlagValues, argv: list[str] | None = None) -> None:
    """``--workdir`` and ``--config`` (whose ``--config.key=value`` overrides are read from ``argv``,
    default ``sys.argv``) on ``flag_values``."""
    flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and config.json.",
                        flag_values=flag_values)
    config_flags.DEFINE_config_file("config", None, "Config file (get_config()); default: the embedded "
                                    "default (at_jax/default_config.py).", flag_values=flag_values,
                                    lock_config=True, sys_argv=argv)


FLAGS = flags.FLAGS
define_flags(FLAGS)


def main(argv: list[str], flag_values: flags.FlagValues = FLAGS) -> None:
    if len(argv) > 1:
        fail(f"unexpected arguments: {' '.join(argv[1:])}")
    workdir, config = flag_values.workdir, flag_values.config
    if not workdir:
        fail("--workdir is required")
    configure_logging()
    from at_jax.training.cpu_defaults import apply_xla_cpu_flags  # pylint: disable=import-outside-toplevel
    apply_xla_cpu_flags()  # before JAX starts a backend
    # Imported here so that flag errors come back before JAX starts.
    # pylint: disable=import-outside-toplevel
    from at_jax.experiments.notebook import run_pipeline
    from at_jax.experiments.teacher_students import format_job_statistics, format_summaries

    with user_errors():
        summaries = run_pipeline(config, workdir)
    print(format_summaries(summaries))
    for name, summary in summaries.items():
        if "runs" in summary:
            print(f"{name}: {format_job_statistics(summary)}")


def run() -> None:
    app.run(main, argv=with_default_config(sys.argv), flags_parser=parse_flags)


class _CallableModule(types.ModuleType):
    """``at_jax.train`` is both this entry point's module and the notebook function (:func:`at_jax.train`):
    importing the module binds its name on the package, so the module itself calls the function."""

    def __call__(self, config, workdir):
        from at_jax.experiments.notebook import train  # pylint: disable=import-outside-toplevel
        return train(config, workdir)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    run()
