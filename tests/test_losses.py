"""at_jax.losses: CE / KD / F-ActT against PyTorch references, and the objective built from config."""
import functools
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from at_jax.attention import at_loss
from at_jax.losses import (
    FActTAdapters,
    Objective,
    beta_factor,
    build_objective,
    cross_entropy,
    distillation_kl,
    factt_loss,
    kd_loss,
)

FIXTURE = np.load(pathlib.Path(__file__).parent / "fixtures" / "core.npz")
RTOL = 1e-5
LOGITS_S, LOGITS_T, LABELS = FIXTURE["logits/s"], FIXTURE["logits/t"], FIXTURE["labels"]


def features(seed, shapes):
    generator = np.random.default_rng(seed)
    return tuple(jnp.asarray(generator.standard_normal(shape, np.float32)) for shape in shapes)


STUDENT = features(1, [(2, 8, 8, 4), (2, 4, 4, 8)])
TEACHER = features(2, [(2, 8, 8, 4), (2, 8, 8, 6), (2, 4, 4, 12)])
LOGITS = features(3, [(2, 5), (2, 5)])
BATCH_LABELS = jnp.array([1, 3])


def test_cross_entropy_matches_torch():
    np.testing.assert_allclose(cross_entropy(LOGITS_S, LABELS), FIXTURE["ce"], rtol=RTOL)
    result = cross_entropy(jnp.asarray(LOGITS_S, jnp.bfloat16), LABELS)
    assert result.dtype == jnp.float32
    np.testing.assert_allclose(result, FIXTURE["ce"], rtol=2e-2)


@pytest.mark.parametrize("temperature, alpha", [(4.0, 0.9), (1.0, 0.5), (2.5, 1.0)])
def test_kd_loss_matches_torch(temperature, alpha):
    key = f"kd/T{temperature}/a{alpha}"
    loss = functools.partial(kd_loss, temperature=temperature, alpha=alpha)
    value, grad = jax.jit(jax.value_and_grad(loss))(LOGITS_S, LOGITS_T, LABELS)
    np.testing.assert_allclose(value, FIXTURE[key], rtol=RTOL)
    np.testing.assert_allclose(grad, FIXTURE[f"{key}/grad"], rtol=RTOL, atol=1e-7)
    kl = distillation_kl(LOGITS_S, LOGITS_T, temperature=temperature)
    np.testing.assert_allclose(kl, FIXTURE[f"{key}/kl"], rtol=RTOL)


def test_kd_loss_limits():
    np.testing.assert_allclose(kd_loss(LOGITS_S, LOGITS_T, LABELS, alpha=0.0), FIXTURE["ce"],
                               rtol=RTOL)
    assert abs(float(distillation_kl(LOGITS_S, LOGITS_S))) < 1e-6


def test_factt_loss_matches_torch():
    value, grad = jax.jit(jax.value_and_grad(factt_loss))(FIXTURE["factt/s"], FIXTURE["factt/t"])
    np.testing.assert_allclose(value, FIXTURE["factt"], rtol=RTOL)
    expected = FIXTURE["factt/grad"]
    np.testing.assert_allclose(grad, expected, rtol=RTOL, atol=1e-6 * np.abs(expected).max())


def test_factt_loss_needs_equal_channels():
    with pytest.raises(ValueError, match="channel"):
        factt_loss(STUDENT[0], TEACHER[1])


def test_adapters_only_where_channels_differ():
    adapters = FActTAdapters(teacher_channels=(4, 12))
    params = jax.jit(adapters.init)(jax.random.PRNGKey(0), STUDENT)["params"]
    assert set(params) == {"adapter_1"}
    assert params["adapter_1"]["kernel"].shape == (1, 1, 8, 12)
    adapted = adapters.apply({"params": params}, STUDENT)
    assert adapted[0] is STUDENT[0]
    assert adapted[1].shape == (2, 4, 4, 12)


def test_beta_factor_schedules():
    progress = jnp.array([0.0, 0.25, 0.5, 1.0])
    np.testing.assert_allclose(beta_factor("constant", progress), 1.0)
    np.testing.assert_allclose(beta_factor("linear", progress), [1.0, 0.75, 0.5, 0.0])
    np.testing.assert_allclose(beta_factor("cosine", progress),
                               [1.0, 0.5 + 0.5 * np.cos(np.pi / 4), 0.5, 0.0], atol=1e-7)
    jitted = jax.jit(beta_factor, static_argnums=0)
    np.testing.assert_allclose(jitted("linear", 0.3), 0.7, rtol=1e-6)
    with pytest.raises(ValueError, match="beta_schedule"):
        beta_factor("step", 0.5)


def call(objective, adapter_params=None, progress=0.0, student=STUDENT, teacher=TEACHER):
    return objective(adapter_params, LOGITS[0], student, LOGITS[1], teacher, BATCH_LABELS,
                     progress)


def test_default_objective_is_cross_entropy_without_teacher():
    objective = build_objective({})
    assert not objective.uses_teacher and not objective.needs_adapters
    assert objective.init_adapters(jax.random.PRNGKey(0), STUDENT, TEACHER) == {}
    total, terms = objective({}, LOGITS[0], STUDENT, None, None, BATCH_LABELS, 0.5)
    assert set(terms) == {"ce", "task", "total"}
    np.testing.assert_allclose(total, cross_entropy(LOGITS[0], BATCH_LABELS), rtol=1e-6)


def test_at_objective_terms_and_total():
    objective = build_objective(ml_collections.ConfigDict({"at_beta": 1000.0}))
    assert objective.uses_teacher and not objective.needs_adapters
    total, terms = jax.jit(functools.partial(call, objective))()
    assert set(terms) == {"ce", "task", "at", "at/0", "at/1", "total"}
    # Default pairing: the last two teacher features with the two student features.
    np.testing.assert_allclose(terms["at/0"], at_loss(STUDENT[0], TEACHER[1]), rtol=1e-6)
    np.testing.assert_allclose(terms["at/1"], at_loss(STUDENT[1], TEACHER[2]), rtol=1e-6)
    np.testing.assert_allclose(terms["at"], terms["at/0"] + terms["at/1"], rtol=1e-6)
    np.testing.assert_allclose(total, terms["ce"] + 1000.0 * terms["at"], rtol=1e-6)
    assert all(value.dtype == jnp.float32 and value.shape == () for value in terms.values())


def test_explicit_pairs_and_at_options_pass_through():
    objective = build_objective({"at_beta": 1.0, "at_pairs": [[1, 0]], "at_p": 4,
                                 "at_form": "paper", "at_resize": "interpolate"})
    _, terms = jax.jit(functools.partial(call, objective))()
    assert set(terms) == {"ce", "task", "at", "at/0", "total"}
    expected = at_loss(STUDENT[1], TEACHER[0], p=4.0, form="paper", resize="interpolate")
    np.testing.assert_allclose(terms["at/0"], expected, rtol=1e-6)


def test_pairing_rule_with_more_student_features():
    objective = build_objective({"at_beta": 1.0})
    assert objective.pairs(3, 2) == ((1, 0), (2, 1))
    assert objective.pairs(2, 3) == ((0, 1), (1, 2))
    assert objective.pairs(3, 3) == ((0, 0), (1, 1), (2, 2))
    with pytest.raises(ValueError, match="out of range"):
        call(build_objective({"at_beta": 1.0, "at_pairs": ((0, 3),)}))


def test_kd_objective_matches_kd_loss():
    objective = build_objective({"kd_alpha": 0.9, "kd_temperature": 4})
    total, terms = call(objective)
    assert set(terms) == {"ce", "task", "kd", "total"}
    expected = kd_loss(LOGITS[0], LOGITS[1], BATCH_LABELS, temperature=4.0, alpha=0.9)
    np.testing.assert_allclose(total, expected, rtol=1e-6)
    np.testing.assert_allclose(terms["kd"], distillation_kl(LOGITS[0], LOGITS[1]), rtol=1e-6)


def test_all_terms_with_schedule_and_adapters():
    objective = build_objective({"at_beta": 100.0, "factt_beta": 10.0, "kd_alpha": 0.5,
                                 "beta_schedule": "linear"})
    assert objective.needs_adapters
    params = objective.init_adapters(jax.random.PRNGKey(0), STUDENT, TEACHER)
    assert set(params) == {"adapter_0", "adapter_1"}  # 4 -> 6 and 8 -> 12 channels
    assert params["adapter_0"]["kernel"].shape == (1, 1, 4, 6)
    total, terms = jax.jit(functools.partial(call, objective))(params, progress=0.25)
    assert set(terms) == {"ce", "task", "kd", "at", "at/0", "at/1", "factt", "total"}
    weighted = terms["task"] + 0.75 * (100.0 * terms["at"] + 10.0 * terms["factt"])
    np.testing.assert_allclose(total, weighted, rtol=1e-6)
    np.testing.assert_allclose(terms["total"], total, rtol=0)

    @jax.jit
    def expected_factt_and_adapter_grads(params):
        adapted = FActTAdapters((6, 12)).apply({"params": params}, STUDENT)
        expected = factt_loss(adapted[0], TEACHER[1]) + factt_loss(adapted[1], TEACHER[2])
        return expected, jax.grad(lambda p: call(objective, p, 0.25)[0])(params)

    expected_factt, grads = expected_factt_and_adapter_grads(params)
    np.testing.assert_allclose(terms["factt"], expected_factt, rtol=1e-5)
    assert float(jnp.abs(grads["adapter_1"]["kernel"]).sum()) > 0


def test_teacher_receives_no_gradient():
    objective = build_objective({"at_beta": 10.0, "factt_beta": 1.0, "kd_alpha": 0.9})
    params = objective.init_adapters(jax.random.PRNGKey(0), STUDENT, TEACHER)

    def total(student, teacher_logits, teacher):
        return objective(params, LOGITS[0], student, teacher_logits, teacher, BATCH_LABELS,
                         0.0)[0]

    student_grad, logits_grad, teacher_grad = jax.jit(jax.grad(total, argnums=(0, 1, 2)))(
        STUDENT, LOGITS[1], TEACHER)
    assert all(float(jnp.abs(g).max()) == 0.0 for g in (logits_grad, *teacher_grad))
    assert all(float(jnp.abs(g).max()) > 0.0 for g in student_grad)


def test_objective_is_hashable_and_static():
    first = build_objective({"at_beta": 1000, "at_pairs": [(0, 1)]})
    second = build_objective({"at_beta": 1000.0, "at_pairs": ((0, 1),)})
    assert first == second and hash(first) == hash(second)
    assert isinstance(first, Objective)


def test_missing_teacher_raises():
    with pytest.raises(ValueError, match="teacher"):
        build_objective({"kd_alpha": 0.5})({}, LOGITS[0], STUDENT, None, None, BATCH_LABELS, 0.0)


@pytest.mark.parametrize(
    "config, message",
    [
        ({"at_beta": -1.0}, "at_beta"),
        ({"factt_beta": float("nan")}, "factt_beta"),
        ({"kd_alpha": 1.5}, "kd_alpha"),
        ({"kd_temperature": 0.0}, "kd_temperature"),
        ({"at_p": -2.0}, "at_p"),
        ({"beta_schedule": "step"}, "beta_schedule"),
        ({"at_reduce": "median"}, "at_reduce"),
        ({"at_form": "both"}, "at_form"),
        ({"at_resize": "nearest"}, "at_resize"),
        ({"at_normalize": "l3"}, "at_normalize"),
        ({"at_pairs": ((0,),)}, "at_pairs"),
        ({"at_pairs": ((0, -1),)}, "at_pairs"),
        ({"at_pairs": ((0, 1.5),)}, "at_pairs"),
        ({"at_beta": "big"}, "at_beta"),
        ({"at_betta": 1.0}, "unknown"),
    ],
)
def test_invalid_config_raises(config, message):
    with pytest.raises(ValueError, match=message):
        build_objective(config)


def test_normalize_none_from_config():
    assert build_objective({"at_normalize": "none"}).option("at_normalize") is None
    assert build_objective({"at_normalize": None}).option("at_normalize") is None
