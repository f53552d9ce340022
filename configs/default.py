"""The embedded default (digits on a cluttered canvas; WRN-16-2 teacher -> WRN-16-1 students)."""
from at_jax.default_config import get_config  # noqa: F401
