"""Input-gradient terms inside the compiled train step: batch-norm semantics and the terms' values."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from at_jax import models
from at_jax.gradient import flip_symmetry_loss, gradient_at_loss, input_gradient_penalty
from at_jax.losses import build_objective, cross_entropy
from at_jax.training.step import StepConfig, make_train_step


def _filled(tree, seed):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: jnp.asarray(rng.normal(0, 0.2, x.shape).astype(np.float32)), tree)


@pytest.fixture(scope="module")
def setting():
    model = models.create("wrn-10-1", 4)
    teacher = models.create("wrn-10-1", 4)
    images = np.random.default_rng(0).integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    labels = np.arange(6, dtype=np.int32) % 4
    x0 = jnp.zeros((1, 8, 8, 3))
    shapes = jax.eval_shape(lambda k: model.init(k, x0, train=False), jax.random.PRNGKey(0))
    variables = {"params": _filled(shapes["params"], 1),
                 "batch_stats": jax.tree.map(lambda s: jnp.full(s.shape, 0.5, jnp.float32),
                                             shapes["batch_stats"])}
    teacher_variables = {"params": _filled(shapes["params"], 2), "batch_stats": variables["batch_stats"]}
    data = {"train_images": jnp.asarray(images), "train_labels": jnp.asarray(labels)}
    return model, teacher, variables, teacher_variables, data


def _one_step(setting, **betas):
    model, teacher, variables, teacher_variables, data = setting
    transform = optax.sgd(0.1)
    params = {"model": variables["params"]}
    state = {"step": jnp.zeros((), jnp.int32), "params": params, "batch_stats": variables["batch_stats"],
             "opt_state": transform.init(params), "rng": jax.random.PRNGKey(0)}
    config = StepConfig(total_steps=10, pad=0, flip=False, mean=(0.5,) * 3, std=(0.25,) * 3)
    step = make_train_step(model, teacher, build_objective(betas), transform, optax.constant_schedule(0.1),
                           config)
    return jax.jit(step)(state, teacher_variables, data, jnp.arange(6))


def test_running_statistics_updated_once_from_the_forward_on_x(setting):
    model, _, variables, _, data = setting
    x = (data["train_images"].astype(jnp.float32) / 255 - 0.5) / 0.25
    _, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    for betas in ({}, {"flip_symmetry_beta": 1.0}, {"grad_penalty_beta": 1.0},
                  {"grad_at_beta": 1.0, "flip_symmetry_beta": 1.0}):
        new_state, _ = _one_step(setting, **betas)
        for got, want in zip(jax.tree.leaves(new_state["batch_stats"]), jax.tree.leaves(updates["batch_stats"])):
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)


def test_logged_terms_equal_the_public_functions(setting):
    model, teacher, variables, teacher_variables, data = setting
    x = (data["train_images"].astype(jnp.float32) / 255 - 0.5) / 0.25
    labels = data["train_labels"]

    def student_loss(params, inputs, targets):  # train-mode batch statistics, as documented
        logits = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, inputs, train=True,
                             mutable=["batch_stats"])[0][0]
        return cross_entropy(logits, targets)

    def teacher_loss(tv, inputs, targets):  # inference-mode teacher
        return cross_entropy(teacher.apply(tv, inputs, train=False)[0], targets)

    _, metrics = _one_step(setting, grad_at_beta=2.0, grad_penalty_beta=3.0, flip_symmetry_beta=5.0)
    expected = {
        "grad_at": gradient_at_loss(student_loss, variables["params"], teacher_loss, teacher_variables, x, labels),
        "grad_penalty": input_gradient_penalty(student_loss, variables["params"], x, labels),
        "flip_symmetry": flip_symmetry_loss(student_loss, variables["params"], x, labels),
    }
    for name, value in expected.items():
        assert float(metrics[name]) == pytest.approx(float(value), rel=1e-4)
        assert float(value) > 0
    total = metrics["task"] + 2.0 * expected["grad_at"] + 3.0 * expected["grad_penalty"] + 5.0 * expected[
        "flip_symmetry"]
    assert float(metrics["total"]) == pytest.approx(float(total), rel=1e-4)
