"""The exception types a user can cause; ``at_jax.train`` turns them into one line and exit code 2."""
from at_jax.checkpoint import CheckpointError
from at_jax.data import DatasetError
from at_jax.metrics import NonFiniteLossError
from at_jax.trainer import ConfigError
from at_jax.workdir import WorkdirError

# ValueError covers the library's argument checks (unknown model, invalid WRN depth, loss options).
USER_ERRORS = (CheckpointError, DatasetError, NonFiniteLossError, ConfigError, WorkdirError, ValueError)
