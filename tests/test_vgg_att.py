"""Learn To Pay Attention (the authors' VGG + attention) and its ``vgg`` baseline: parameter counts per variant,
shapes, the attention equations, the heads, dropout and its randomness, gradient averaging, the LTPA recipe, and
a short trainer run. (Against the PyTorch rebuild of the authors' networks: tests/test_authors_networks.py.)"""
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
from at_jax.models.layers import dropout, scale_gradient
from at_jax.models.vgg_att import LinearAttention, attention_maps
from model_utils import count_params, numpy_variables, param_shapes

ATTENTION_NAMES = [f"vgg-att{levels}-{aggregation}-{compatibility}" for levels in (2, 3)
                   for aggregation in ("concat", "indep") for compatibility in ("pc", "dp")]
CONV_WIDTHS = (3, 64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512)


def conv_params(count: int) -> int:
    """conv3x3 (with bias) + BN (scale, bias) for conv1..conv``count``."""
    return sum(9 * cin * cout + cout + 2 * cout for cin, cout in zip(CONV_WIDTHS[:count], CONV_WIDTHS[1:count + 1]))


# ------------------------------------------------------------------ parameter counts and shapes
@pytest.mark.parametrize("classes", [10, 100])
def test_vgg_is_vgg_bn_drop(classes):
    head = (512 * 512 + 512) + 2 * 512 + (512 * classes + classes)  # Linear, BN, Linear
    assert count_params(create("vgg", classes)) == conv_params(13) + head


@pytest.mark.parametrize("name", ATTENTION_NAMES)
def test_parameter_counts_follow_the_variant(name):
    widths = (256, 512, 512) if "att3" in name else (512, 512)
    backbone = conv_params(15) + 512 * 512 + 512                      # conv1-15 and the Linear giving g
    projection = (2 * 512 + 512 * 256 + 256) if "att3" in name else 0  # BN-ReLU-Dropout-Linear(512, 256)
    compatibility = sum(c + 1 for c in widths) if name.endswith("-pc") else 0
    heads = sum(2 * c for c in widths)                                 # BN of each g_a
    classify = (sum(widths) * 100 + 100) if "concat" in name else sum(c * 100 + 100 for c in widths)
    assert count_params(create(name, 100)) == backbone + projection + compatibility + heads + classify


@pytest.mark.parametrize("name", ["vgg"] + ATTENTION_NAMES)
def test_every_name_gives_logits_features_and_maps(name):
    model = create(name, 10)
    x = jnp.zeros((2, 32, 32, 3))
    variables = param_shapes(model)
    (logits, features), state = jax.eval_shape(
        functools.partial(model.apply, train=False, mutable=["intermediates"]), variables, x)
    assert logits.shape == (2, 10) and logits.dtype == jnp.float32
    sizes = (8, 4, 2) if name == "vgg" else (32, 16, 8)
    assert [f.shape for f in features] == [(2, s, s, c) for s, c in zip(sizes, (256, 512, 512))]
    maps = state.get("intermediates", {}).get("attention", ())
    expected = {"vgg": [], "att2": [(2, 16, 16), (2, 8, 8)], "att3": [(2, 32, 32), (2, 16, 16), (2, 8, 8)]}
    assert [m.shape for m in maps] == expected["vgg" if name == "vgg" else name.split("-")[1]]
    assert all(m.dtype == jnp.float32 for m in maps)
    has_projection = "project" in variables["params"].get("attention1", {})
    assert has_projection == name.startswith("vgg-att3")
    assert "dropout" not in variables["batch_stats"]   # dropout keeps no state: its key comes from rngs


def test_bad_names_and_options():
    for bad in ("vgg-att4-concat-pc", "vgg-att3-sum-pc", "vgg-att3-concat-xx", "vgg16"):
        with pytest.raises(ValueError):
            create(bad, 10)
    with pytest.raises(ValueError):
        create("vgg-att3-concat-pc", 10, compatibility="dp")  # fixed by the name
    with pytest.raises(ValueError, match="unknown option"):
        create("vgg", 10, gradient_averaging=True)            # the baseline has a single path
    with pytest.raises(ValueError, match="at most 32 x 32"):
        param_shapes(create("vgg", 10), size=64)              # nn.View(512) needs a 1 x 1 last map


def test_bfloat16_compute_keeps_float32_params_logits_and_maps():
    model = create("vgg-att2-indep-dp", 10, dtype=jnp.bfloat16)
    x = jnp.zeros((1, 16, 16, 3), jnp.bfloat16)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    assert {leaf.dtype for leaf in jax.tree.leaves(variables["params"])} == {jnp.dtype(jnp.float32)}
    (logits, features), state = jax.eval_shape(
        functools.partial(model.apply, train=False, mutable=["intermediates"]), variables, x)
    assert logits.dtype == jnp.float32 and features[0].dtype == jnp.bfloat16
    assert all(m.dtype == jnp.float32 for m in state["intermediates"]["attention"])


# ------------------------------------------------------------------ the attention equations
@pytest.mark.parametrize("compatibility", ["pc", "dp"])
@pytest.mark.parametrize("channels", [5, 7])
def test_linear_attention_matches_the_equations(compatibility, channels):
    rng = np.random.default_rng(0)
    local = rng.normal(size=(2, 3, 4, channels)).astype(np.float32)
    global_feature = rng.normal(size=(2, 7)).astype(np.float32)
    module = LinearAttention(compatibility)
    variables = jax.eval_shape(lambda: module.init(jax.random.key(0), local, global_feature, False, None))
    variables = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(np.float32), variables)
    variables["batch_stats"] = jax.tree.map(np.abs, variables.get("batch_stats", {}))
    attention, descriptor = module.apply(variables, local, global_feature, False, None)
    g = global_feature
    if channels != 7:  # projected down: Linear(BN(g) -> ReLU), inference mode
        bn, stats, project = variables["params"]["project_bn"], variables["batch_stats"]["project_bn"], \
            variables["params"]["project"]
        g = np.maximum((g - stats["mean"]) / np.sqrt(stats["var"] + 1e-5) * bn["scale"] + bn["bias"], 0)
        g = g @ project["kernel"] + project["bias"]
    if compatibility == "pc":
        u = variables["params"]["u"]
        scores = np.einsum("nhwc,c->nhw", local + g[:, None, None, :], u["kernel"].reshape(channels)) + u["bias"]
    else:
        scores = np.einsum("nhwc,nc->nhw", local, g)
    flat = scores.reshape(2, -1)
    expected = np.exp(flat - flat.max(1, keepdims=True))
    expected = (expected / expected.sum(1, keepdims=True)).reshape(2, 3, 4)
    np.testing.assert_allclose(np.asarray(attention), expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(descriptor), np.einsum("nhw,nhwc->nc", expected, local),
                               rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def two_models():
    """att3-concat-pc and att3-indep-dp sharing backbone weights, applied to one 8x8 batch (inference)."""
    x = np.random.default_rng(1).normal(size=(3, 8, 8, 3)).astype(np.float32)
    results = {}
    shared = None
    for name in ("vgg-att3-concat-pc", "vgg-att3-indep-dp"):
        model = create(name, 7)
        variables = numpy_variables(model, x, kernel_gain=2.0)
        if shared is None:
            shared = variables
        else:  # same backbone and global feature as the first model
            for collection in ("params", "batch_stats"):
                for key, value in shared[collection].items():
                    if key.startswith(("conv", "global")):
                        variables[collection][key] = value
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


def _head(variables, level, descriptor):
    """BN (inference) -> ReLU of one attended descriptor."""
    bn, stats = variables["params"][f"head{level}_bn"], variables["batch_stats"][f"head{level}_bn"]
    return np.maximum((descriptor - stats["mean"]) / np.sqrt(stats["var"] + 1e-5) * bn["scale"] + bn["bias"], 0)


def test_concat_and_indep_heads(two_models):
    variables, logits, _, intermediates = two_models["vgg-att3-concat-pc"]
    heads = [_head(variables, level, np.asarray(intermediates[f"attention{level}"]["__call__"][0][1]))
             for level in (1, 2, 3)]
    classify = variables["params"]["classify"]
    assert classify["kernel"].shape == (256 + 512 + 512, 7)
    np.testing.assert_allclose(np.asarray(logits), np.concatenate(heads, 1) @ classify["kernel"]
                               + classify["bias"], rtol=1e-4, atol=1e-4)
    variables, logits, _, intermediates = two_models["vgg-att3-indep-dp"]
    per_level = [np.asarray(intermediates[f"classify{level}"]["__call__"][0]) for level in (1, 2, 3)]
    np.testing.assert_allclose(np.asarray(logits), np.sum(per_level, axis=0), rtol=1e-5, atol=1e-5)  # summed
    assert "classify" not in variables["params"]


def test_attention_maps_helper():
    x = jnp.zeros((1, 8, 8, 3))
    for name, shapes in (("vgg", []), ("vgg-att2-indep-pc", [(1, 4, 4), (1, 2, 2)])):
        model = create(name, 10)
        variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))  # noqa: B023
        maps = jax.eval_shape(functools.partial(attention_maps, model), variables, x)
        assert isinstance(maps, tuple) and [m.shape for m in maps] == shapes


# ------------------------------------------------------------------ dropout and gradient scaling
def test_dropout_scales_kept_units_and_drops_the_rate():
    x = jnp.ones((200, 100))
    y = np.asarray(dropout(x, 0.4, jax.random.key(3)))
    np.testing.assert_allclose(np.unique(y), [0.0, 1 / 0.6], rtol=1e-6)
    assert abs((y == 0).mean() - 0.4) < 0.01
    assert dropout(x, 0.4, None) is x


def test_scale_gradient_is_the_identity_forward():
    x = jnp.asarray([1.5, -2.0, 3.25])
    np.testing.assert_array_equal(scale_gradient(x, 0.5), x)
    np.testing.assert_allclose(jax.grad(lambda v: jnp.sum(scale_gradient(v, 0.5) ** 2))(x), x)  # 0.5 * 2x


@pytest.fixture(scope="module")
def vgg_train():
    model = create("vgg", 5)
    x = np.random.default_rng(2).normal(size=(4, 8, 8, 3)).astype(np.float32)
    variables = jax.jit(lambda key: model.init(key, x, train=False))(jax.random.key(7))
    forward = jax.jit(functools.partial(model.apply, train=True, mutable=["batch_stats"]))
    return model, x, variables, forward


def test_init_is_the_torch_codes(vgg_train):
    """MSRinit convs N(0, 2 / (9 * out)) with zero bias, Torch7 BN scale U(0, 1), Torch7 Linear U(+-1/sqrt(in))."""
    params = vgg_train[2]["params"]
    kernel = np.asarray(params["conv6"]["conv"]["kernel"])  # (3, 3, 256, 256): fan-out 9 * 256
    assert abs(kernel.std() / np.sqrt(2.0 / (9 * 256)) - 1.0) < 0.02
    assert not np.any(params["conv6"]["conv"]["bias"])
    scale = np.asarray(params["conv6"]["bn"]["scale"])
    assert scale.min() >= 0.0 and scale.max() <= 1.0 and 0.4 < scale.mean() < 0.6
    fc1 = np.asarray(params["fc1"]["kernel"])
    assert np.abs(fc1).max() <= 1 / np.sqrt(512) and abs(fc1.std() * np.sqrt(3 * 512) - 1.0) < 0.02
    assert 0 < np.abs(params["fc1"]["bias"]).max() <= 1 / np.sqrt(512)


def test_dropout_draws_from_the_dropout_rng_stream(vgg_train):
    model, x, variables, forward = vgg_train
    (a, _), updated = forward(variables, x, rngs={"dropout": jax.random.key(1)})
    (again, _), _ = forward(variables, x, rngs={"dropout": jax.random.key(1)})
    (b, _), _ = forward(variables, x, rngs={"dropout": jax.random.key(2)})
    np.testing.assert_array_equal(a, again)                  # the same key: the same masks
    assert np.max(np.abs(np.asarray(a) - np.asarray(b))) > 1e-4   # another key: other masks
    assert set(updated["batch_stats"]) <= set(variables["batch_stats"])   # no state of its own
    inference = model.apply(variables, x, train=False)[0]
    assert not np.allclose(inference, a)                     # inference: no dropout, no key needed
    with pytest.raises(ValueError, match="dropout"):
        forward(variables, x)


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
             "steps_per_call": 1, "dataset.num_train": 16, "dataset.num_test": 16, "metrics.writers": "jsonl"}
    teacher_dir, student_dir = str(tmp_path / "teacher"), str(tmp_path / "student")
    summary = train_and_evaluate(tiny_config(model="wrn-10-1-cra", **short), teacher_dir)
    assert summary["step"] == 1 and summary["model"] == "wrn-10-1-cra"

    config = tiny_config(model="vgg-att2-concat-pc", **{"teacher.model": "wrn-10-1-cra",
                                                        "teacher.workdir": teacher_dir,
                                                        "loss.at_beta": 1e3, **short})
    config.model_kwargs = {"gradient_averaging": True}
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


# ------------------------------------------------------------------ the recipe
def load_ltpa_config(argument: str):
    import importlib.util  # pylint: disable=import-outside-toplevel
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "ltpa_cifar.py")
    spec = importlib.util.spec_from_file_location("ltpa_cifar", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(argument)


def test_ltpa_config_is_the_authors_recipe():
    config = load_ltpa_config("model=vgg-att2-concat-pc,dataset=cifar10")
    assert (config.model, config.dataset.name, config.num_epochs) == ("vgg-att2-concat-pc", "cifar10", 300)
    assert config.optimizer.decay_factor == 0.5 and config.optimizer.learning_rate == 0.1  # Torch lr 1, damped
    assert [round(f * 300) for f in config.optimizer.decay_at] == list(range(24, 300, 25))
    assert config.optimizer.weight_decay == 5e-4 and config.batch_size == 128 and config.loss.at_beta == 0
    assert config.optimizer.momentum == 0.9 and not config.optimizer.nesterov
    assert (config.augment.pad, config.augment.flip) == (0, "on")          # flips only
    assert config.model_kwargs.to_dict() == {"gradient_averaging": True}
    create(config.model, 10, **config.model_kwargs)
    student = load_ltpa_config("model=vgg,teacher=vgg-att3-concat-pc,method=at")
    assert (student.model, student.teacher.model, student.loss.at_beta) == ("vgg", "vgg-att3-concat-pc", 1e3)
    assert student.model_kwargs.to_dict() == {}
    create(student.model, 100)
    with pytest.raises(ValueError):
        load_ltpa_config("dataset=imagenet")


def torch7_sgd_updates(gradients, lr, momentum, weight_decay, params):
    """torch/optim sgd.lua: dfdx += wd * x; dampening = momentum; v = g (first step), else m v + (1 - m) g."""
    updates, velocity = [], None
    for gradient in gradients:
        gradient = gradient + weight_decay * params
        velocity = gradient if velocity is None else momentum * velocity + (1 - momentum) * gradient
        updates.append(-lr * velocity)
    return updates


def test_torch7_learning_rate_one_is_optax_learning_rate_point_one():
    from at_jax.training.optimizer import make_optimizer  # pylint: disable=import-outside-toplevel
    config = load_ltpa_config("model=vgg")
    transform, _ = make_optimizer(config.optimizer, total_steps=10_000)
    params = jnp.asarray([0.5, -1.0, 2.0])
    gradients = [jnp.asarray(np.random.default_rng(step).normal(size=3)) for step in range(80)]
    torch_updates = torch7_sgd_updates(gradients, 1.0, 0.9, 5e-4, params)
    state = transform.init(params)
    for step, gradient in enumerate(gradients):
        update, state = transform.update(gradient, state, params)
        # the same from the second step on, up to the first step's undamped gradient, decaying like 0.9^t
        first = gradients[0] + 5e-4 * params
        tolerance = 0.9 ** (step + 1) * float(jnp.max(jnp.abs(first))) + 1e-6
        assert np.max(np.abs(np.asarray(update) - np.asarray(torch_updates[step]))) <= tolerance
    np.testing.assert_allclose(update, torch_updates[-1], atol=1e-3)
