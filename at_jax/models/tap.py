"""Any flax module as at_jax uses it: ``(logits, features)``, with features taken from layers named by path.

A model of the zoo returns ``(logits, features)``; a user's module may return logits only. :class:`Network`
wraps either so that ``init``, ``init_with_output`` and ``apply`` behave as a zoo model's:

- a module that returns logits only has no features of its own (``()``);
- with ``layers`` (``'/'``-joined flax module paths such as ``"group2_block0"`` or ``"block_3/mlp"``), the
  features are the outputs of those modules' ``__call__``, in the order given. They are recorded with
  flax's method interceptor (:func:`flax.linen.intercept_methods`) during the one forward pass the step runs
  anyway: nothing is computed twice, and the outputs the step does not use are dropped by XLA.

:func:`tappable_layers` lists every path of a model with its output shape (``python -m at_jax.inspect``).
A module called more than once in a forward pass (weight sharing) is recorded at its last call.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from at_jax.attention import token_grid
from at_jax.errors import ConfigError


@contextlib.contextmanager
def recording() -> Iterator[dict[str, Any]]:
    """Inside the context, every module ``__call__`` output is stored under its ``'/'``-joined path."""
    record: dict[str, Any] = {}

    def interceptor(next_fun, args, kwargs, context):
        output = next_fun(*args, **kwargs)
        if context.method_name == "__call__":
            record["/".join(context.module.path)] = output
        return output

    with nn.intercept_methods(interceptor):
        yield record


def split_output(output: Any) -> tuple[Any, tuple]:
    """``(logits, features)`` of a module's output: a ``(logits, features)`` pair, or logits alone."""
    if isinstance(output, tuple) and len(output) == 2 and isinstance(output[1], (tuple, list)):
        return output[0], tuple(output[1])
    return output, ()


def layer_shapes(record: dict[str, Any]) -> list[tuple[str, tuple[int, ...]]]:
    """``(path, shape)`` of the array outputs in ``record`` (the root module, path ``""``, left out)."""
    return [(path, tuple(output.shape)) for path, output in record.items()
            if path and hasattr(output, "shape") and hasattr(output, "dtype")]


def usable_for_at(shape: Sequence[int]) -> bool:
    """Whether an output of this shape has a spatial layout an attention map can be taken of: NHWC
    activations, or ``(N, T, D)`` tokens whose patch grid :func:`at_jax.attention.token_grid` finds."""
    if len(shape) == 4:
        return True
    if len(shape) == 3:
        try:
            token_grid(int(shape[1]))
        except ValueError:
            return False
        return True
    return False


def missing_layer(path: str, record: dict[str, Any], model_name: str) -> ConfigError:
    """The one-line error for a path ``model_name`` does not have, naming the paths it has."""
    paths = [name for name, _ in layer_shapes(record)]
    return ConfigError(f"layer {path!r} does not exist in {model_name}; its layers: {', '.join(paths)} "
                       f"(python -m at_jax.inspect --model={model_name} lists them with shapes)")


class Network:
    """``module`` with the zoo's interface (see the module docstring); ``layers`` replace its features."""

    def __init__(self, module: nn.Module, layers: Sequence[str] = (), name: str = ""):
        inner_name = module.name if isinstance(module, Network) else type(module).__name__
        self.module = module.module if isinstance(module, Network) else module
        self.layers, self.name = tuple(layers), name or inner_name

    def _outputs(self, output: Any, record: dict[str, Any]) -> tuple[Any, tuple]:
        logits, features = split_output(output)
        if not self.layers:
            return logits, features
        for path in self.layers:
            if path not in record:
                raise missing_layer(path, record, self.name)
        return logits, tuple(record[path] for path in self.layers)

    def init(self, rngs: Any, *args, **kwargs) -> Any:
        return self.module.init(rngs, *args, **kwargs)

    def init_with_output(self, rngs: Any, *args, **kwargs) -> tuple[tuple[Any, tuple], Any]:
        with recording() as record:
            output, variables = self.module.init_with_output(rngs, *args, **kwargs)
        return self._outputs(output, record), variables

    def apply(self, variables: Any, *args, **kwargs) -> Any:
        """``(logits, features)``, or ``((logits, features), updates)`` when ``mutable`` is given."""
        with recording() as record:
            result = self.module.apply(variables, *args, **kwargs)
        if kwargs.get("mutable", False) is not False:
            output, updates = result
            return self._outputs(output, record), updates
        return self._outputs(result, record)


def tap_layers(model: Any, layers: Sequence[str], name: str = "") -> Any:
    """``model`` with the outputs of ``layers`` as its features (``model`` itself when ``layers`` is empty)."""
    return Network(model, layers, name) if layers else model


def tappable_layers(model: Any, sample_shape: Sequence[int]) -> list[tuple[str, tuple[int, ...]]]:
    """``(path, output shape)`` of every module call in ``model``'s forward pass on a batch of
    ``sample_shape`` (evaluated on shapes only: no parameter is allocated)."""
    module = model.module if isinstance(model, Network) else model
    sample = jax.ShapeDtypeStruct(tuple(sample_shape), jnp.float32)
    record_shapes: list[tuple[str, tuple[int, ...]]] = []

    def forward(x):
        with recording() as record:
            module.init_with_output(jax.random.PRNGKey(0), x, train=False)
        record_shapes.extend(layer_shapes(record))
        return 0

    jax.eval_shape(forward, sample)
    return record_shapes
