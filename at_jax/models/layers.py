"""Layers and initialisers shared by the model zoo: PyTorch-faithful batch norm, conv/dense inits.

All modules take a compute ``dtype`` (e.g. ``jnp.bfloat16``) and keep parameters in
``param_dtype`` (float32). Batch-norm statistics are always reduced and stored in float32.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Dtype = Any
Initializer = Callable[..., jax.Array]
#: A zero-argument factory returning a flax module ``m`` with ``m(y) -> y'`` of the same shape,
#: applied to a residual branch before the addition (where Squeeze-and-Excitation goes).
ChannelAttentionFactory = Callable[[], nn.Module]

#: He et al. (2015) normal init, std = sqrt(2 / fan_in); fan_in = kh * kw * in for HWIO kernels.
kaiming_normal_fan_in: Initializer = nn.initializers.variance_scaling(2.0, "fan_in", "normal")
#: torchvision ResNet conv init, std = sqrt(2 / fan_out); fan_out = kh * kw * out.
kaiming_normal_fan_out: Initializer = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
#: PyTorch ``nn.Linear`` default weight init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (Torch7's ``nn.Linear:reset`` too).
torch_linear_kernel: Initializer = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
#: Torch7 ``nn.BatchNormalization:reset`` scale init, ``weight:uniform()`` = U(0, 1) (the bias is 0).
torch_batch_norm_scale: Initializer = nn.initializers.uniform(scale=1.0)


def torch_linear_bias(fan_in: int) -> Initializer:
    """PyTorch ``nn.Linear`` default bias init, U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / float(fan_in) ** 0.5

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Dtype = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def torch_style_conv(features: int, kernel: int, stride: int, dtype: Dtype, name: str,
                     kernel_init: Initializer) -> nn.Conv:
    """A bias-free square conv with PyTorch's symmetric padding (k-1)//2 ('SAME' differs at stride 2),
    float32 parameters and compute in ``dtype``."""
    padding = (kernel - 1) // 2
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                   padding=((padding, padding), (padding, padding)), use_bias=False, dtype=dtype,
                   param_dtype=jnp.float32, kernel_init=kernel_init, name=name)


class BatchNorm(nn.Module):
    """Batch normalisation over all axes but the last, with PyTorch's semantics.

    Train mode: ``y = (x - mean_B) / sqrt(var_B + eps) * scale + bias`` with the biased batch
    variance ``var_B``; running statistics are updated as
    ``running = momentum * running + (1 - momentum) * batch`` where the running variance takes the
    *unbiased* batch variance ``var_B * n / (n - 1)`` (n = elements per channel), exactly as
    ``torch.nn.functional.batch_norm``. ``momentum=0.9`` here equals PyTorch's ``momentum=0.1``.
    Eval mode normalises with the running statistics. The statistics are not updated while the
    module is being initialised. Statistics are computed and stored in float32; the output is
    cast to ``dtype``. Variables: params ``scale``, ``bias``; batch_stats ``mean``, ``var``
    (the names ``flax.linen.BatchNorm`` uses).
    """

    use_running_average: bool
    momentum: float = 0.9
    epsilon: float = 1e-5
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    scale_init: Initializer = nn.initializers.ones
    bias_init: Initializer = nn.initializers.zeros
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        features = x.shape[-1]
        running_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), jnp.float32)
        running_var = self.variable("batch_stats", "var", jnp.ones, (features,), jnp.float32)
        scale = self.param("scale", self.scale_init, (features,), self.param_dtype)
        bias = self.param("bias", self.bias_init, (features,), self.param_dtype)

        x32 = x.astype(jnp.float32)
        if self.use_running_average:
            mean, var = running_mean.value, running_var.value
        else:
            reduction_axes = tuple(range(x.ndim - 1))
            count = 1.0   # a float: elements per channel pass 2**31 on a pod (ImageNet's first BN: 171,197 images)
            for axis in reduction_axes:
                count *= x.shape[axis]
            mean = jnp.mean(x32, axis=reduction_axes)
            sync = self.axis_name is not None and not self.is_initializing()
            if sync:
                mean = jax.lax.pmean(mean, self.axis_name)
                count = count * jax.lax.psum(1, self.axis_name)
            var = jnp.mean(jnp.square(x32 - mean), axis=reduction_axes)
            if sync:
                var = jax.lax.pmean(var, self.axis_name)
            if not self.is_initializing():
                unbiased_var = var * (count / jnp.maximum(count - 1, 1))
                running_mean.value = self.momentum * running_mean.value + (1.0 - self.momentum) * mean
                running_var.value = (
                    self.momentum * running_var.value + (1.0 - self.momentum) * unbiased_var
                )
        multiplier = jax.lax.rsqrt(var + self.epsilon) * scale.astype(jnp.float32)
        y = (x32 - mean) * multiplier + bias.astype(jnp.float32)
        return y.astype(self.dtype if self.dtype is not None else x.dtype)


def dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Inverted dropout ``x * m / (1 - rate)``, m ~ Bernoulli(1 - rate) i.i.d. per element (Torch7 ``nn.Dropout``
    and PyTorch scale at train time, so inference is the identity). ``key=None`` (inference) returns ``x``."""
    if key is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / jnp.asarray(1.0 - rate, x.dtype), jnp.zeros((), x.dtype))


class DropoutKeys(nn.Module):
    """The dropout randomness of one forward pass: ``__call__(train) -> key`` (train) or ``None`` (inference).

    The key is the ``'dropout'`` rng stream of ``apply`` (``rngs={"dropout": key}``), as for ``flax.linen``'s
    own ``Dropout``; the at_jax train step passes ``fold_in(fold_in(run_key, step), 1)``, so the masks of a
    run follow its seed and step, like its batches and augmentation. Inference needs no key.
    """

    @nn.compact
    def __call__(self, train: bool) -> jax.Array | None:
        if not train:
            return None
        if not self.has_rng("dropout"):
            raise ValueError("train=True with dropout needs a 'dropout' rng: "
                             "model.apply(variables, x, train=True, rngs={'dropout': key})")
        return self.make_rng("dropout")


def scale_gradient(x: jax.Array, factor: float) -> jax.Array:
    """The identity in the forward pass whose backward multiplies the incoming gradient by ``factor``:
    ``sg(x) + factor * (x - sg(x))`` (exactly ``x`` forward, d/dx = factor)."""
    if factor == 1.0:
        return x
    frozen = jax.lax.stop_gradient(x)
    return frozen + jnp.asarray(factor, x.dtype) * (x - frozen)


def is_positive_int(value: Any) -> bool:
    """True for a Python or numpy integer >= 1 (bools excluded)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


def check_module_kwargs(module_class: type, kwargs: dict[str, Any], reserved: tuple[str, ...] = ()) -> None:
    """Raises ``ValueError`` if ``kwargs`` holds a name that is not a settable field of the module.

    ``reserved`` names are fields fixed by the model name (e.g. ``depth`` of ``wrn-16-1``).
    """
    settable = {
        field.name
        for field in dataclasses.fields(module_class)
        if field.init and field.name not in ("parent", "name") and field.name not in reserved
    }
    unknown = sorted(set(kwargs) - settable)
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)} for {module_class.__name__}; "
            f"valid options: {', '.join(sorted(settable))}"
        )
