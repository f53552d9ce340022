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


def test_linear_scaling_with_batch_size_and_warmup():
    config = {"learning_rate": 0.1, "decay_at": (0.5,), "decay_factor": 0.1, "reference_batch_size": 256,
              "warmup_steps": 4}
    schedule = learning_rate_schedule(config, total_steps=20, batch_size=1024)   # peak 0.1 * 1024 / 256
    values = [float(schedule(step)) for step in (0, 1, 3, 4, 9, 10, 19)]
    np.testing.assert_allclose(values, [0.1, 0.2, 0.4, 0.4, 0.4, 0.04, 0.04], rtol=1e-6)
    plain = learning_rate_schedule({"learning_rate": 0.1}, total_steps=20, batch_size=1024)
    assert float(plain(0)) == pytest.approx(0.1)  # no reference batch: the rate as given


def test_large_batch_keys_in_a_run(tmp_path):
    from at_jax.training import train_and_evaluate  # pylint: disable=import-outside-toplevel
    from at_jax.run_files import read_metrics  # pylint: disable=import-outside-toplevel
    from trainer_utils import tiny_config  # pylint: disable=import-outside-toplevel

    config = tiny_config(num_train_steps=2, log_every_steps=1, checkpoint_every_steps=2,
                         **{"optimizer.reference_batch_size": 8, "optimizer.warmup_steps": 2,
                            "optimizer.decay_at": ()})
    train_and_evaluate(config, str(tmp_path))
    rates = [r["train/learning_rate"] for r in read_metrics(str(tmp_path / "metrics.jsonl")) if "train/total" in r]
    np.testing.assert_allclose(rates, [0.1, 0.2], rtol=1e-6)   # batch 16 = 2 x 8: peak 0.2, reached at step 1
