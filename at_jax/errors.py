"""What a user can cause: the :class:`UserError` family. Entry points print these as one line, exit 2.

Everything else (an internal bug, a shape error in library code) keeps its traceback. This module imports
nothing of at_jax, so that every layer can raise these.
"""


def first_line(error: BaseException) -> str:
    """The first non-blank line of ``error``'s message (stripped), else its type's name: a long or multi-line
    message from a library (XLA's, PIL's) inside one of our one-line errors."""
    return next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)


class UserError(Exception):
    """Something the user can fix (a setting, a path, a file): one line ``at_jax: error: ...``, exit 2."""


class ConfigError(UserError, ValueError):
    """A config value that cannot work (unknown key, model or option, out-of-range number)."""


class WorkdirError(UserError, ValueError):
    """The workdir cannot be used for this run (not a directory, not writable, holds another run)."""


class CheckpointError(UserError, ValueError):
    """A checkpoint or run directory the user pointed at cannot be used (missing, empty, damaged)."""


class DatasetError(UserError, ValueError):
    """A dataset cannot be loaded; the message says what to do about it."""


class NonFiniteLossError(UserError, RuntimeError):
    """The training loss became NaN or infinite (a learning rate or loss weight too large)."""


class ExperimentError(UserError, ValueError):
    """An experiment config or workdir that cannot be used."""


class FigureError(UserError, ValueError):
    """A figure cannot be drawn from what the user gave (no metrics, no such test image, bad option)."""


class PathError(UserError, ValueError):
    """A path or URL no installed storage backend serves (an unknown scheme, gs:// without its extra)."""


class Preempted(Exception):
    """The job was asked to stop (SIGTERM) and saved a checkpoint; re-running the same command resumes it.
    Not a user error: the entry points exit with :data:`at_jax.training.preemption.PREEMPTED_EXIT_CODE`."""


class DeviceError(UserError, RuntimeError):
    """A process sees fewer accelerators than the launch asked for (a misconfigured cluster job)."""
