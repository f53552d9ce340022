"""Learn To Pay Attention (VGG-16-BN + attention): shapes, parameter counts, the attention equations,
every registry name, and short trainer runs (a CRA teacher, an LTPA student with AT)."""
from __future__ import annotations

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import at_jax.models.cra  # noqa: F401  (registers *-cra)
import at_jax.models.vgg_att  # noqa: F401  (registers vgg, vgg-att*)
import at_jax.models.wrn  # noqa: F401
from at_jax.models import create
from at_jax.models.vgg_att import LinearAttention, attention_maps
from model_utils import count_params, numpy_variables, param_shapes

ATTENTION_NAMES = [f"vgg-att{levels}-{aggregation}-{compatibility}" for levels in (2, 3)
                   for aggregation in ("concat", "indep") for compatibility in ("pc", "dp")]


# ------------------------------------------------------------------ parameter counts and shapes
def test_parameter_counts_match_the_authors_code():
    # SaoYan/LearnToPayAttention AttnVGG_before (im_size 32, 100 classes), counted with PyTorch.
    assert count_params(create("vgg", 100)) == 19_758_756
    assert count_params(create("vgg-att3-concat-pc", 100)) == 19_993_764


@pytest.mark.parametrize("name", ATTENTION_NAMES)
def test_parameter_counts_follow_the_variant(name):
    levels = 3 if "att3" in name else 2
    backbone = 19_758_756 - (512 * 100 + 100)  # vgg without its classifier on g
    projector = 256 * 512 if levels == 3 else 0
    compatibility = 512 * levels if name.endswith("-pc") else 0
    classifier = (512 * levels * 100 + 100) if "concat" in name else levels * (512 * 100 + 100)
    assert count_params(create(name, 100)) == backbone + projector + compatibility + classifier


@pytest.mark.parametrize("name", ["vgg"] + ATTENTION_NAMES)
def test_every_name_gives_logits_features_and_maps(name):
    model = create(name, 10)
    x = jnp.zeros((2, 32, 32, 3))
    variables = param_shapes(model)
    (logits, features), state = jax.eval_shape(
        functools.partial(model.apply, train=False, mutable=["intermediates"]), variables, x)
    assert logits.shape == (2, 10) and logits.dtype == jnp.float32
    assert [f.shape for f in features] == [(2, 32, 32, 256), (2, 16, 16, 512), (2, 8, 8, 512)]
    maps = state.get("intermediates", {}).get("attention", ())
    expected = {"vgg": [], "att2": [(2, 16, 16), (2, 8, 8)], "att3": [(2, 32, 32), (2, 16, 16), (2, 8, 8)]}
    assert [m.shape for m in maps] == expected["vgg" if name == "vgg" else name.split("-")[1]]
    assert all(m.dtype == jnp.float32 for m in maps)
    has_projector = "projector1" in variables["params"]
    assert has_projector == name.startswith("vgg-att3")


def test_bad_names_and_options():
    for bad in ("vgg-att4-concat-pc", "vgg-att3-sum-pc", "vgg-att3-concat-xx", "vgg16"):
        with pytest.raises(ValueError):
            create(bad, 10)
    with pytest.raises(ValueError):
        create("vgg-att3-concat-pc", 10, compatibility="dp")  # fixed by the name
    with pytest.raises(ValueError):
        create("vgg", 10, widths=3)


def test_bfloat16_compute_keeps_float32_params_logits_and_maps():
    model = create("vgg-att2-indep-dp", 10, dtype=jnp.bfloat16)
    x = jnp.zeros((1, 16, 16, 3), jnp.bfloat16)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
    (logits, features), state = jax.eval_shape(
        functools.partial(model.apply, train=False, mutable=["intermediates"]), variables, x)
    assert logits.dtype == jnp.float32 and features[0].dtype == jnp.bfloat16
    assert all(m.dtype == jnp.float32 for m in state["intermediates"]["attention"])


# ------------------------------------------------------------------ the attention equations
@pytest.mark.parametrize("compatibility", ["pc", "dp"])
def test_linear_attention_matches_the_equations(compatibility):
    rng = np.random.default_rng(0)
    local = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    global_feature = rng.normal(size=(2, 5)).astype(np.float32)
    module = LinearAttention(compatibility)
    variables = module.init(jax.random.key(0), local, global_feature)
    attention, descriptor = module.apply(variables, local, global_feature)
    if compatibility == "pc":
        u = np.asarray(variables["params"]["u"]["kernel"]).reshape(5)
        scores = np.einsum("nhwc,c->nhw", local + global_feature[:, None, None, :], u)
    else:
        scores = np.einsum("nhwc,nc->nhw", local, global_feature)
    flat = scores.reshape(2, -1)
    expected = np.exp(flat - flat.max(1, keepdims=True))
    expected = (expected / expected.sum(1, keepdims=True)).reshape(2, 3, 4)
    np.testing.assert_allclose(np.asarray(attention), expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(descriptor), np.einsum("nhw,nhwc->nc", expected, local),
                               rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def two_models():
    """att3-concat-pc and att3-indep-dp sharing backbone weights, applied to one 8x8 batch."""
    x = np.random.default_rng(1).normal(size=(3, 8, 8, 3)).astype(np.float32)
    results = {}
    shared = None
    for name in ("vgg-att3-concat-pc", "vgg-att3-indep-dp"):
        model = create(name, 7)
        variables = numpy_variables(model, x)
        if shared is None:
            shared = variables
        else:  # same backbone and projector as the first model
            for key, value in shared["params"].items():
                if key.startswith(("block", "dense", "projector")):
                    variables["params"][key] = value
        apply = jax.jit(functools.partial(model.apply, train=False, capture_intermediates=True,
                                          mutable=["intermediates"]))
        (logits, features), state = apply(variables, x)
        results[name] = (variables, logits, features, state["intermediates"])
    return results


def test_maps_are_distributions(two_models):
    for _, _, _, intermediates in two_models.values():
        maps = intermediates["attention"]
        assert [m.shape for m in maps] == [(3, 8, 8), (3, 4, 4), (3, 2, 2)]
        for attention in maps:
            attention = np.asarray(attention)
            assert np.all(attention >= 0)
            np.testing.assert_allclose(attention.sum(axis=(1, 2)), 1.0, rtol=1e-5)


def test_pc_and_dp_give_different_maps_on_the_same_features(two_models):
    (_, _, features_pc, pc), (_, _, features_dp, dp) = two_models.values()
    for a, b in zip(features_pc, features_dp):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for map_pc, map_dp in zip(pc["attention"], dp["attention"]):
        assert np.max(np.abs(np.asarray(map_pc) - np.asarray(map_dp))) > 1e-3


def test_concat_and_indep_classifiers(two_models):
    variables, logits, _, intermediates = two_models["vgg-att3-concat-pc"]
    descriptors = [np.asarray(intermediates[f"attention{level}"]["__call__"][0][1]) for level in (1, 2, 3)]
    classify = variables["params"]["classify"]
    np.testing.assert_allclose(np.asarray(logits), np.concatenate(descriptors, 1) @ classify["kernel"]
                               + classify["bias"], rtol=1e-4, atol=1e-4)
    variables, logits, _, intermediates = two_models["vgg-att3-indep-dp"]
    per_level = [np.asarray(intermediates[f"classify{level}"]["__call__"][0]) for level in (1, 2, 3)]
    np.testing.assert_allclose(np.asarray(logits), np.mean(per_level, axis=0), rtol=1e-5, atol=1e-5)
    assert "classify" not in variables["params"]


def test_attention_maps_helper():
    x = jnp.zeros((1, 8, 8, 3))
    for name, shapes in (("vgg", []), ("vgg-att2-indep-pc", [(1, 4, 4), (1, 2, 2)])):
        model = create(name, 10)
        variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))  # noqa: B023
        maps = jax.eval_shape(functools.partial(attention_maps, model), variables, x)
        assert isinstance(maps, tuple) and [m.shape for m in maps] == shapes


# ------------------------------------------------------------------ the trainer
@pytest.fixture
def fast_prng():
    """jax.random's threefry inits compile slowly on CPU; rbg keys keep the trainer runs short."""
    previous = jax.config.jax_default_prng_impl
    jax.config.update("jax_default_prng_impl", "rbg")
    yield
    jax.config.update("jax_default_prng_impl", previous)


@pytest.mark.slow
def test_cra_teacher_then_ltpa_student_with_attention_transfer(tmp_path, fast_prng):
    from at_jax.training import train_and_evaluate  # pylint: disable=import-outside-toplevel
    from trainer_utils import metrics_records, tiny_config  # pylint: disable=import-outside-toplevel

    short = {"num_train_steps": 1, "log_every_steps": 1, "eval_every_steps": 0, "checkpoint_every_steps": 1,
             "steps_per_call": 1, "dataset.num_train": 16, "dataset.num_test": 16, "tensorboard": False}
    teacher_dir, student_dir = str(tmp_path / "teacher"), str(tmp_path / "student")
    summary = train_and_evaluate(tiny_config(model="wrn-10-1-cra", **short), teacher_dir)
    assert summary["step"] == 1 and summary["model"] == "wrn-10-1-cra"

    config = tiny_config(model="vgg-att2-concat-pc", **{"teacher.model": "wrn-10-1-cra",
                                                        "teacher.workdir": teacher_dir,
                                                        "loss.at_beta": 1e3, **short})
    summary = train_and_evaluate(config, student_dir)
    assert summary["step"] == 1 and summary["teacher"] == "wrn-10-1-cra"
    assert 0.0 <= summary["accuracy"] <= 1.0 and np.isfinite(summary["eval_loss"])
    records = [r for r in metrics_records(student_dir) if "train/total" in r]
    assert len(records) == 1
    for record in records:
        assert record["train/at"] > 0 and np.isfinite(record["train/total"])
        assert record["train/total"] == pytest.approx(record["train/ce"] + 1e3 * record["train/at"], rel=1e-4)
    with open(os.path.join(student_dir, "config.json")) as file:
        assert json.load(file)["model"] == "vgg-att2-concat-pc"


def test_ltpa_config_recipe():
    import importlib.util  # pylint: disable=import-outside-toplevel
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "ltpa_cifar.py")
    spec = importlib.util.spec_from_file_location("ltpa_cifar", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config("model=vgg-att2-concat-pc,dataset=cifar10")
    assert (config.model, config.dataset.name, config.num_epochs) == ("vgg-att2-concat-pc", "cifar10", 300)
    assert config.optimizer.decay_factor == 0.5 and config.optimizer.learning_rate == 0.1
    assert [round(f * 300) for f in config.optimizer.decay_at] == list(range(25, 300, 25))
    assert config.optimizer.weight_decay == 5e-4 and config.batch_size == 128 and config.loss.at_beta == 0
    student = module.get_config("model=vgg,teacher=vgg-att3-concat-pc,method=at")
    assert (student.model, student.teacher.model, student.loss.at_beta) == ("vgg", "vgg-att3-concat-pc", 1e3)
    create(student.model, 100)
    with pytest.raises(ValueError):
        module.get_config("dataset=imagenet")
