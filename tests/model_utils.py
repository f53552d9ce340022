"""Shared helpers for model tests: parameter shapes/counts without compiling an init, numpy-filled variables."""
import jax
import jax.numpy as jnp
import numpy as np


def param_shapes(model, size: int = 32) -> dict:
    """The variables' ShapeDtypeStructs for a (1, size, size, 3) input."""
    return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)), train=False))


def count_params(model, size: int = 32) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(param_shapes(model, size)["params"]))


def numpy_variables(model, x, seed: int = 0, kernel_gain: float = 1.0) -> dict:
    """Random variables drawn with numpy (jax.random inits compile slowly on CPU): kernels
    N(0, kernel_gain / fan_in), BN scale and running var U(0.5, 1.5), everything else N(0, 0.1^2)."""
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = path[-1].key
        if name == "kernel":
            return rng.normal(0.0, np.sqrt(kernel_gain / np.prod(leaf.shape[:-1])), leaf.shape).astype(np.float32)
        if name in ("scale", "var"):
            return rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
        return rng.normal(0.0, 0.1, leaf.shape).astype(np.float32)

    return jax.tree_util.tree_map_with_path(fill, shapes)
