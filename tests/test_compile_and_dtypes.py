"""No recompilation after the first step; bf16 compute keeps float32 parameters; a bf16 teacher keeps AT."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from at_jax import models
from at_jax.attention import at_loss
from at_jax.training.checkpoint import Checkpointer
from at_jax.training import train_and_evaluate
from trainer_utils import metrics_records, tiny_config


class CompileCounter:
    """Counts XLA backend compilations through jax.monitoring."""

    def __init__(self):
        self.count = 0
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event, duration, **kwargs):
        del duration, kwargs
        if event == "/jax/compilation_cache/compile_requests_use_cache" or event.endswith(
                "backend_compile_duration"):
            self.count += 1


COUNTER = CompileCounter()


def test_training_longer_compiles_nothing_more(tmp_path):
    overrides = {"log_every_steps": 2, "eval_every_steps": 4, "checkpoint_every_steps": 4,
                 "steps_per_call": 2}
    train_and_evaluate(tiny_config(num_train_steps=4, **overrides), str(tmp_path / "warm"))
    before = COUNTER.count
    train_and_evaluate(tiny_config(num_train_steps=4, **overrides), str(tmp_path / "short"))
    short = COUNTER.count - before
    before = COUNTER.count
    train_and_evaluate(tiny_config(num_train_steps=12, **overrides), str(tmp_path / "long"))
    long = COUNTER.count - before
    assert short > 0
    assert long == short, f"{long} compilations for 12 steps vs {short} for 4"


def test_bfloat16_compute_with_float32_parameters(tmp_path):
    summary = train_and_evaluate(tiny_config(compute_dtype="bfloat16", **{"num_train_steps": 4}),
                                 str(tmp_path))
    assert summary["step"] == 4
    assert all(np.isfinite(r["train/total"]) for r in metrics_records(tmp_path) if "train/total" in r)
    state = Checkpointer(str(tmp_path), read_only=True).restore(4)
    dtypes = {np.asarray(leaf).dtype for leaf in jax.tree.leaves(state["params"])}
    assert dtypes == {np.dtype(np.float32)}
    momenta = {np.asarray(leaf).dtype for leaf in jax.tree.leaves(state["opt_state"])
               if np.asarray(leaf).ndim > 0}
    assert momenta == {np.dtype(np.float32)}


def _numpy_filled(variables, seed):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: jnp.asarray(rng.normal(0, 0.3, x.shape).astype(np.float32))
                        if x.ndim > 1 else jnp.ones(x.shape, np.float32), variables)


def test_bfloat16_teacher_keeps_at_loss_within_one_percent():
    """The teacher forward in bf16 changes the AT loss by < 1% (the trainer's teacher.compute_dtype)."""
    x = jnp.asarray(np.random.default_rng(0).normal(size=(8, 32, 32, 3)).astype(np.float32))
    student = models.create("wrn-16-1", 10)
    teacher32 = models.create("wrn-16-2", 10)
    teacher16 = models.create("wrn-16-2", 10, dtype=jnp.bfloat16)
    s_vars = _numpy_filled(jax.eval_shape(lambda k: student.init(k, x, train=False), jax.random.PRNGKey(0)), 1)
    t_vars = _numpy_filled(jax.eval_shape(lambda k: teacher32.init(k, x, train=False), jax.random.PRNGKey(0)),
                           2)
    s_features = student.apply(s_vars, x, train=False)[1]
    for name, teacher, inputs in (("f32", teacher32, x), ("bf16", teacher16, x.astype(jnp.bfloat16))):
        t_features = teacher.apply(t_vars, inputs, train=False)[1]
        losses = [float(at_loss(s, t)) for s, t in zip(s_features, t_features)]
        if name == "f32":
            reference = losses
    np.testing.assert_allclose(losses, reference, rtol=1e-2)
    assert all(loss > 0 for loss in reference)
