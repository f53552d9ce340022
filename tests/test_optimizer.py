"""The optax optimizer equals torch.optim.SGD(momentum, weight_decay) step by step; the step schedule."""
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from at_jax.training.optimizer import learning_rate_schedule, make_optimizer


def torch_sgd_reference(param, grads, lr_at, momentum, weight_decay, nesterov=False):
    """PyTorch's SGD update rule, written out (torch/optim/sgd.py, dampening 0)."""
    buffer = None
    for step, grad in enumerate(grads):
        grad = grad + weight_decay * param
        buffer = grad if buffer is None else momentum * buffer + grad
        direction = grad + momentum * buffer if nesterov else buffer
        param = param - lr_at(step) * direction
    return param


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_matches_pytorch_rule(nesterov):
    rng = np.random.default_rng(0)
    param = rng.normal(size=(5,)).astype(np.float32)
    grads = [rng.normal(size=(5,)).astype(np.float32) for _ in range(10)]
    config = {"learning_rate": 0.1, "momentum": 0.9, "nesterov": nesterov, "weight_decay": 5e-4,
              "decay_at": (0.3, 0.6), "decay_factor": 0.2}
    transform, schedule = make_optimizer(config, total_steps=10)
    params = jnp.asarray(param)
    state = transform.init(params)
    for grad in grads:
        updates, state = transform.update(jnp.asarray(grad), state, params)
        params = optax.apply_updates(params, updates)
    expected = torch_sgd_reference(param.astype(np.float64), [g.astype(np.float64) for g in grads],
                                   lambda s: float(schedule(s)), 0.9, 5e-4, nesterov)
    np.testing.assert_allclose(np.asarray(params), expected, rtol=1e-5, atol=1e-6)


def test_schedule_cifar_recipe():
    schedule = learning_rate_schedule({"learning_rate": 0.1, "decay_at": (0.3, 0.6, 0.8),
                                       "decay_factor": 0.2}, total_steps=200)
    assert float(schedule(59)) == pytest.approx(0.1)
    assert float(schedule(60)) == pytest.approx(0.02)
    assert float(schedule(120)) == pytest.approx(0.004)
    assert float(schedule(199)) == pytest.approx(0.0008)


@pytest.mark.parametrize("bad", [{"learning_rate": float("nan")}, {"learning_rate": float("inf")},
                                 {"learning_rate": 0.1, "weight_decay": -1.0},
                                 {"learning_rate": 0.1, "momentum": 1.5}])
def test_invalid_settings_raise(bad):
    with pytest.raises(ValueError):
        make_optimizer(bad, total_steps=10)
