"""Compose a custom student objective from at_jax's gradient- and activation-attention losses.

Run: python examples/custom_gradient_loss.py    (CPU: about 20 s of compute, mostly compilation)

Data: scikit-learn's 8x8 handwritten digits (ships with the package, no download), as NHWC
(N, 8, 8, 1). A wide teacher CNN is trained briefly with cross-entropy; then a thin student is
trained with

    CE(student) + β_grad · gradient_at_loss + β_act · Σ_groups at_loss + β_l2 · input_gradient_penalty

where gradient_at_loss = 0.5 · Σ (J_S − J_T)², J = ∂CE/∂x (the teacher frozen), at_loss is the
activation attention transfer of the paper (official-code form) on the two conv groups, and the
min-l2 term is double backprop. The update needs ∂²CE/∂W∂x, which is just jax.grad of a function
that calls jax.grad w.r.t. the input, all inside one jitted step.
"""
from __future__ import annotations

import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits

import at_jax

NUM_CLASSES = 10
BATCH_SIZE = 64
TEACHER_STEPS = 150
STUDENT_STEPS = 150
BETA_GRADIENT = 10.0  # J sums over the batch of a mean loss, so its squared norm is ~1/N: large β
BETA_ACTIVATION = 10.0
BETA_MIN_L2 = 5.0


KAIMING_NORMAL = nn.initializers.variance_scaling(2.0, "fan_in", "normal")  # as the official code


class SmallCNN(nn.Module):
    """conv3x3 → relu → conv3x3/2 → relu → flatten → dense; returns (logits, features)."""

    widths: tuple[int, int]

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        group1 = nn.relu(nn.Conv(self.widths[0], (3, 3), kernel_init=KAIMING_NORMAL)(x))
        group2 = nn.relu(nn.Conv(self.widths[1], (3, 3), strides=(2, 2), kernel_init=KAIMING_NORMAL)(group1))
        flat = group2.reshape(group2.shape[0], -1)
        logits = nn.Dense(NUM_CLASSES, kernel_init=KAIMING_NORMAL)(flat)
        return logits, (group1, group2)


def load_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    digits = load_digits()
    images = (digits.images.astype(np.float32) / 16.0 - 0.5)[..., None]  # (N, 8, 8, 1), NHWC
    labels = digits.target.astype(np.int32)
    order = np.random.default_rng(0).permutation(len(labels))
    images, labels = images[order], labels[order]
    return images[:1400], labels[:1400], images[1400:], labels[1400:]


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def make_loss_fn(model: nn.Module):
    """(params, x, y) -> mean CE: the form every at_jax.gradient function takes."""
    def loss_fn(params, x, y):
        logits, _ = model.apply({"params": params}, x)
        return cross_entropy(logits, y)
    return loss_fn


def batches(images: np.ndarray, labels: np.ndarray, steps: int, seed: int):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        index = rng.integers(0, len(labels), size=BATCH_SIZE)
        yield jnp.asarray(images[index]), jnp.asarray(labels[index])


def accuracy(model: nn.Module, params, images: np.ndarray, labels: np.ndarray) -> float:
    logits, _ = jax.jit(model.apply)({"params": params}, jnp.asarray(images))
    return float(jnp.mean(jnp.argmax(logits, axis=-1) == jnp.asarray(labels)))


def train_teacher(model: nn.Module, params, images, labels):
    optimizer = optax.adam(3e-3)
    loss_fn = make_loss_fn(model)

    @jax.jit
    def step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    opt_state = optimizer.init(params)
    for x, y in batches(images, labels, TEACHER_STEPS, seed=1):
        params, opt_state, _ = step(params, opt_state, x, y)
    return params


def make_student_step(student: nn.Module, teacher: nn.Module, optimizer):
    student_loss_fn, teacher_loss_fn = make_loss_fn(student), make_loss_fn(teacher)

    def objective(params_s, params_t, x, y):
        logits_s, features_s = student.apply({"params": params_s}, x)
        _, features_t = teacher.apply({"params": params_t}, x)
        features_t = jax.lax.stop_gradient(features_t)
        terms = {
            "ce": cross_entropy(logits_s, y),
            "grad_at": at_jax.gradient_at_loss(student_loss_fn, params_s, teacher_loss_fn, params_t, x, y),
            "act_at": sum(at_jax.at_loss(s, t) for s, t in zip(features_s, features_t)),
            "min_l2": at_jax.input_gradient_penalty(student_loss_fn, params_s, x, y),
        }
        total = (terms["ce"] + BETA_GRADIENT * terms["grad_at"]
                 + BETA_ACTIVATION * terms["act_at"] + BETA_MIN_L2 * terms["min_l2"])
        # monitored only (digits are not mirror-symmetric, so it is not in the objective)
        terms["flip_sym"] = jax.lax.stop_gradient(at_jax.flip_symmetry_loss(student_loss_fn, params_s, x, y))
        return total, terms

    @jax.jit
    def step(params_s, opt_state, params_t, x, y):
        (total, terms), grads = jax.value_and_grad(objective, has_aux=True)(params_s, params_t, x, y)
        updates, opt_state = optimizer.update(grads, opt_state, params_s)
        return optax.apply_updates(params_s, updates), opt_state, total, terms

    return step


def main() -> None:
    start = time.time()
    train_images, train_labels, test_images, test_labels = load_data()
    teacher, student = SmallCNN(widths=(16, 32)), SmallCNN(widths=(8, 16))
    sample = jnp.asarray(train_images[:1])
    params_t = jax.jit(teacher.init)(jax.random.key(0), sample)["params"]
    params_s = jax.jit(student.init)(jax.random.key(1), sample)["params"]

    params_t = train_teacher(teacher, params_t, train_images, train_labels)
    teacher_accuracy = accuracy(teacher, params_t, test_images, test_labels)
    print(f"teacher test accuracy {teacher_accuracy:.3f} ({time.time() - start:.1f} s)")

    optimizer = optax.adam(3e-3)
    opt_state = optimizer.init(params_s)
    step = make_student_step(student, teacher, optimizer)
    for index, (x, y) in enumerate(batches(train_images, train_labels, STUDENT_STEPS, seed=2)):
        params_s, opt_state, total, terms = step(params_s, opt_state, params_t, x, y)
        if index % 50 == 0 or index == STUDENT_STEPS - 1:
            printed = "  ".join(f"{name} {float(value):.4g}" for name, value in terms.items())
            print(f"step {index:4d}  total {float(total):.4f}  {printed}")
    print(f"student test accuracy {accuracy(student, params_s, test_images, test_labels):.3f}")
    print(f"done in {time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
