"""Gradient-based attention: input gradients and the losses built on them.

Zagoruyko & Komodakis (ICLR 2017), section "gradient-based attention transfer". The attention of a
network with loss L(W, x) is its input gradient

    J(W, x) = ∂L(W, x) / ∂x,

an array shaped like x (NHWC for images). Three regularisers are built from it, each a scalar that is
differentiable in the (student's) parameters W:

* transfer          0.5 · Σ (J_S − J_T)²                    (:func:`gradient_at_loss`)
* min-l2 / double   0.5 · Σ J²                              (:func:`input_gradient_penalty`,
  backprop                                                    Drucker & LeCun 1992)
* flip symmetry     0.5 · Σ (J(x) − flip_w(J(flip_w(x))))²   (:func:`flip_symmetry_loss`)

The sums run over every element (batch, height, width, channels); the paper's objective adds β times
one of these to the task loss (β lives in the objective, not here). Taking ∂/∂W of such a loss needs
the mixed second derivative ∂²L/∂W∂x: here that is simply ``jax.grad`` of a function that itself
calls ``jax.grad`` with respect to x, which costs about one extra backward pass.

``loss_fn`` is any user function ``(params, x, y) -> scalar`` (a flax model's apply wrapped with a
cross-entropy, a plain jnp function, ...). Everything is pure and jit-able: jit the caller, e.g.
``jax.jit(lambda p, x, y: input_gradient_penalty(loss_fn, p, x, y))``, or pass ``loss_fn`` through
``functools.partial`` before ``jax.jit``.

Auxiliary outputs. With ``has_aux=True``, ``loss_fn`` returns ``(loss, aux)`` (for example the
updated ``batch_stats`` of a flax model run with ``mutable=["batch_stats"]``) and every function
returns ``(value, aux)``, where ``aux`` comes from the first evaluation of the (student's) loss on
the un-flipped x. Batch norm in train mode: the loss is then evaluated with the statistics of the
current batch, so the input gradient J also differentiates through the batch mean and variance
(every sample's gradient depends on the whole batch), and the flipped evaluation of
:func:`flip_symmetry_loss` normalises with the statistics of the flipped batch. Run teachers (and,
where that coupling is unwanted, students) with batch norm in inference mode; the paper used NIN
without batch norm for these experiments.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

LossFn = Callable[..., Any]
"""``(params, x, y) -> scalar`` or, with ``has_aux=True``, ``(params, x, y) -> (scalar, aux)``."""


def _half_squared_sum(difference: jax.Array) -> jax.Array:
    """0.5 · Σ difference², accumulated in at least float32 (bf16 inputs do not lose the sum)."""
    accumulate_dtype = jnp.promote_types(difference.dtype, jnp.float32)
    return 0.5 * jnp.sum(jnp.square(difference.astype(accumulate_dtype)))


def _with_aux(value: jax.Array, aux: Any, has_aux: bool) -> Any:
    return (value, aux) if has_aux else value


def _input_gradient_and_aux(
    loss_fn: LossFn, params: Any, x: jax.Array, y: Any, has_aux: bool
) -> tuple[jax.Array, Any]:
    """(∂L/∂x, aux); aux is None when ``has_aux`` is False."""
    if has_aux:
        return jax.grad(loss_fn, argnums=1, has_aux=True)(params, x, y)
    return jax.grad(loss_fn, argnums=1)(params, x, y), None


def input_gradient(
    loss_fn: LossFn, params: Any, x: jax.Array, y: Any, *, has_aux: bool = False
) -> Any:
    """Input gradient J = ∂ loss_fn(params, x, y) / ∂x, the gradient-based attention map.

    Args:
      loss_fn: ``(params, x, y) -> scalar`` (or ``-> (scalar, aux)`` with ``has_aux``).
      params: any pytree, passed through to ``loss_fn``.
      x: floating-point inputs, e.g. (N, H, W, C); J has the same shape and dtype.
      y: targets, passed through to ``loss_fn``.
      has_aux: ``loss_fn`` returns ``(loss, aux)``; the result is then ``(J, aux)``.

    Returns:
      J, or ``(J, aux)`` with ``has_aux``. J is differentiable in ``params`` (∂²L/∂params∂x).
    """
    input_grad, aux = _input_gradient_and_aux(loss_fn, params, x, y, has_aux)
    return _with_aux(input_grad, aux, has_aux)


def gradient_at_loss(
    loss_fn_s: LossFn,
    params_s: Any,
    loss_fn_t: LossFn,
    params_t: Any,
    x: jax.Array,
    y: Any,
    *,
    has_aux: bool = False,
    teacher_has_aux: bool | None = None,
) -> Any:
    """Gradient-based attention transfer: 0.5 · Σ (J_S − J_T)² over every element.

    J_S = ∂L_S(params_s, x, y)/∂x and J_T = ∂L_T(params_t, x, y)/∂x. The value is differentiable
    in ``params_s`` through the mixed second derivative ∂²L_S/∂params_s∂x. The teacher is frozen:
    ``stop_gradient`` is applied to ``params_t`` and to J_T, so no gradient reaches the teacher
    (``jax.grad`` w.r.t. ``params_t`` is exactly zero). The paper's objective is
    L_S + β · gradient_at_loss (β/2 · ‖J_S − J_T‖², the ½ being included here).

    Args:
      loss_fn_s: the student's loss ``(params, x, y) -> scalar``.
      params_s: the student's parameters (any pytree).
      loss_fn_t: the teacher's loss (any architecture).
      params_t: the teacher's parameters.
      x: one batch of inputs, shared by both (J_S and J_T both have the shape of x).
      y: its targets.
      has_aux: ``loss_fn_s`` returns ``(loss, aux)``; the result is then ``(value, aux_s)``.
      teacher_has_aux: ``loss_fn_t`` returns ``(loss, aux)`` (its aux is dropped); defaults to
        ``has_aux``.

    Returns:
      The scalar loss, or ``(loss, aux_s)`` with ``has_aux``.
    """
    if teacher_has_aux is None:
        teacher_has_aux = has_aux
    input_grad_t, _ = _input_gradient_and_aux(
        loss_fn_t, jax.lax.stop_gradient(params_t), x, y, teacher_has_aux
    )
    input_grad_t = jax.lax.stop_gradient(input_grad_t)
    input_grad_s, aux_s = _input_gradient_and_aux(loss_fn_s, params_s, x, y, has_aux)
    value = _half_squared_sum(input_grad_s - input_grad_t)
    return _with_aux(value, aux_s, has_aux)


def input_gradient_penalty(
    loss_fn: LossFn, params: Any, x: jax.Array, y: Any, *, has_aux: bool = False
) -> Any:
    """Min-l2 input-gradient norm (double backprop, Drucker & LeCun 1992): 0.5 · Σ J².

    J = ∂ loss_fn(params, x, y)/∂x; the value is differentiable in ``params`` through the mixed
    second derivative. Returns the scalar, or ``(value, aux)`` with ``has_aux``.
    """
    input_grad, aux = _input_gradient_and_aux(loss_fn, params, x, y, has_aux)
    return _with_aux(_half_squared_sum(input_grad), aux, has_aux)


def flip_symmetry_loss(
    loss_fn: LossFn,
    params: Any,
    x: jax.Array,
    y: Any,
    *,
    has_aux: bool = False,
    axis: int = 2,
    y_flipped: Any = None,
) -> Any:
    """Flip-symmetry norm of the input gradient: 0.5 · Σ (J(x) − flip_w(J(flip_w(x))))².

    J(x) = ∂ loss_fn(params, x, y)/∂x and flip_w reverses the width axis (``axis=2`` of NHWC).
    The loss is zero when the gradient attention of a horizontally flipped image is the flipped
    attention of the image, e.g. for a network whose loss is invariant under width flips. Both
    evaluations are differentiated (the gradient w.r.t. ``params`` flows through both J terms).

    Args:
      loss_fn: ``(params, x, y) -> scalar`` (or ``-> (scalar, aux)`` with ``has_aux``); it is
        called on (x, y) and on (flip_w(x), y_flipped).
      params: as in :func:`input_gradient`.
      x: as in :func:`input_gradient`.
      y: as in :func:`input_gradient`.
      has_aux: ``loss_fn`` returns ``(loss, aux)``; the result is then ``(value, aux)`` with the
        aux of the evaluation on the un-flipped x.
      axis: the axis to flip; 2 is the width of NHWC.
      y_flipped: the targets of the flipped batch; defaults to ``y``, right for class labels.
        Pass flipped targets when they are spatial (e.g. segmentation masks).

    Returns:
      The scalar loss, or ``(loss, aux)`` with ``has_aux``.
    """
    input_grad, aux = _input_gradient_and_aux(loss_fn, params, x, y, has_aux)
    input_grad_of_flipped, _ = _input_gradient_and_aux(
        loss_fn, params, jnp.flip(x, axis=axis), y if y_flipped is None else y_flipped, has_aux
    )
    value = _half_squared_sum(input_grad - jnp.flip(input_grad_of_flipped, axis=axis))
    return _with_aux(value, aux, has_aux)


__all__ = [
    "flip_symmetry_loss",
    "gradient_at_loss",
    "input_gradient",
    "input_gradient_penalty",
]
