"""Session set-up: one compilation cache and one tiny teacher per test run, shared by the xdist workers."""
import fcntl
import os
import tempfile


def _share_compiled_programs() -> None:
    """JAX's persistent compilation cache for this test run (before JAX is imported), shared by the xdist
    workers and inherited by the CLI subprocesses: the same tiny programs compile once per run, not once per
    test. A user's own JAX_COMPILATION_CACHE_DIR is kept."""
    run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"pid{os.getpid()}"
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                          os.path.join(tempfile.gettempdir(), f"at_jax_test_compilation_cache_{run_id}"))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")


def _apply_cpu_flags() -> None:
    """The XLA:CPU flags the entry points apply (at_jax/training/cpu_defaults.py: convolutions on XLA's Eigen
    kernels, 2x faster steps), here before this process's backend starts, for the runs tests make in-process;
    the CLI subprocesses inherit them. ``AT_JAX_XLA_CPU_FLAGS=0`` (its opt-out) tests without them."""
    from at_jax.training.cpu_defaults import apply_xla_cpu_flags  # pylint: disable=import-outside-toplevel
    apply_xla_cpu_flags()


_share_compiled_programs()
_apply_cpu_flags()

import pytest

from trainer_utils import tiny_config


def shared_root(tmp_path_factory):
    """A directory every xdist worker of this pytest run sees (the worker's own basetemp without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def teacher_dir(tmp_path_factory):
    """configs/tiny.py trained for its 8 steps (WRN-10-1 on synthetic 16x16 data), once per run: the first
    worker trains it under a lock, the others find it finished (``train_and_evaluate`` returns at once)."""
    from at_jax.training import train_and_evaluate  # pylint: disable=import-outside-toplevel

    root = shared_root(tmp_path_factory)
    workdir = root / "session_teacher"
    with open(root / "session_teacher.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        train_and_evaluate(tiny_config(), str(workdir))
    return str(workdir)


@pytest.fixture
def run_main(monkeypatch):
    """``python -m at_jax.train ARGS`` in this process: its flag parsing, then its ``main``."""
    from absl import flags  # pylint: disable=import-outside-toplevel

    import importlib  # pylint: disable=import-outside-toplevel
    from at_jax import cli  # pylint: disable=import-outside-toplevel
    train = importlib.import_module("at_jax.train")   # the module (at_jax.train is also the notebook function)
    from trainer_utils import REPO  # pylint: disable=import-outside-toplevel

    monkeypatch.setenv("AT_JAX_XLA_CPU_FLAGS", "0")  # this process's backend has started already
    monkeypatch.chdir(REPO)

    def run(args):
        argv = train.with_default_config(["at_jax.train", *args])
        flag_values = flags.FlagValues()
        train.define_flags(flag_values, argv)
        train.main(cli.parse_flags(argv, flag_values), flag_values)

    return run


@pytest.fixture
def cli_error(run_main, capsys):
    """Runs the train CLI in this process expecting a user error; returns its one stderr line."""

    def error(args) -> str:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            run_main(args)
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert exited.value.code == 2, lines
        assert len(lines) == 1 and lines[0].startswith("at_jax: error: "), lines
        assert "Traceback" not in lines[0]
        return lines[0]

    return error
