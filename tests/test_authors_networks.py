"""LTPA, its VGG baseline and the NIN against a PyTorch rebuild of the authors' Torch networks
(tests/make_fixtures_ltpa_nin.py): parameter counts, parameter names and shapes, eval-mode outputs, and the
gradients of the authors' hand-written backward (``gradient_averaging``)."""
from __future__ import annotations

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import at_jax.models.nin  # noqa: F401  (registers nin-*)
import at_jax.models.vgg_att  # noqa: F401  (registers vgg, vgg-att*)
from at_jax.models import create
from model_utils import count_params, param_shapes
from reference_weights import reference_input, reference_tensor

FIXTURE = np.load(os.path.join(os.path.dirname(__file__), "fixtures", "ltpa_nin.npz"))
VGG_NAMES = ["vgg"] + [f"vgg-att{n}-{a}-{c}" for n in (2, 3) for a in ("concat", "indep") for c in ("pc", "dp")]
NIN_NAMES = ["nin-thin", "nin-wide", "nin-thin-nobn", "nin-wide-nobn"]
LEAF_NAMES = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}


def torch_name(path: tuple) -> str:
    """The PyTorch state_dict name of a flax variable path ('params' or 'batch_stats' first)."""
    keys = [entry.key for entry in path[1:]]
    return ".".join(keys[:-1] + [LEAF_NAMES[keys[-1]]])


def torch_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A flax kernel's shape in PyTorch's layout: HWIO -> OIHW, (in, out) -> (out, in)."""
    if len(shape) == 4:
        return (shape[3], shape[2], shape[0], shape[1])
    return tuple(shape[::-1]) if len(shape) == 2 else tuple(shape)


def to_torch_layout(value: np.ndarray) -> np.ndarray:
    if value.ndim == 4:
        return value.transpose(3, 2, 0, 1)
    return value.T if value.ndim == 2 else value


def from_torch(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """The reference tensor of ``name`` in flax layout: OIHW -> HWIO, (out, in) -> (in, out)."""
    value = reference_tensor(name, torch_shape(shape))
    if value.ndim == 4:
        return value.transpose(2, 3, 1, 0)
    return value.T if value.ndim == 2 else value


def reference_variables(model, size: int) -> dict:
    """The fixture's weights as flax variables (the dropout stream set to zeros)."""
    def fill(path, leaf):
        if path[-1].key == "stream":
            return np.zeros(leaf.shape, leaf.dtype)
        return from_torch(torch_name(path), leaf.shape)

    return jax.tree_util.tree_map_with_path(fill, param_shapes(model, size))


def torch_names(model) -> list[list]:
    """[[state_dict name, torch shape], ...] of a flax model's parameters and BN statistics, sorted."""
    names = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(param_shapes(model))[0]:
        if path[-1].key != "stream":
            names.append([torch_name(path), list(torch_shape(leaf.shape))])
    return sorted(names)


# ------------------------------------------------------------------ structure
@pytest.mark.parametrize("name", VGG_NAMES + NIN_NAMES)
def test_parameter_counts_equal_the_pytorch_rebuild(name):
    for classes in (10, 100):
        assert count_params(create(name, classes)) == int(FIXTURE[f"counts/{name}/{classes}"]), (name, classes)


@pytest.mark.parametrize("name", VGG_NAMES + NIN_NAMES)
def test_every_tensor_has_its_pytorch_counterpart(name):
    assert torch_names(create(name, 10)) == sorted(json.loads(str(FIXTURE[f"names/{name}"])))


def test_pinned_counts_and_the_papers():
    counts = {name: (int(FIXTURE[f"counts/{name}/10"]), int(FIXTURE[f"counts/{name}/100"]))
              for name in ("vgg", "vgg-att3-concat-pc", "nin-thin", "nin-wide")}
    assert counts == {"vgg": (14_991_946, 15_038_116), "vgg-att3-concat-pc": (19_856_461, 19_971_751),
                      "nin-thin": (200_138, 207_428), "nin-wide": (1_005_642, 1_023_012)}
    assert abs(counts["nin-thin"][0] / 0.2e6 - 1) < 0.01 and abs(counts["nin-wide"][0] / 1.0e6 - 1) < 0.01


# ------------------------------------------------------------------ outputs
@pytest.mark.parametrize("name", ["vgg", "vgg-att3-concat-pc", "vgg-att3-indep-dp", "vgg-att2-indep-pc",
                                  "nin-wide", "nin-thin-nobn-norelu"])
def test_eval_outputs_match_the_pytorch_rebuild(name):
    size = 32 if name.startswith("nin") else 16
    x = reference_input((2, size, size, 3), 2 if size == 32 else 1)
    if name.endswith("-norelu"):
        model = create(name[:-len("-norelu")], 10, relu_before_pool=False)
    else:
        model = create(name, 10)
    variables = reference_variables(model, size)
    apply = jax.jit(functools.partial(model.apply, train=False, mutable=["intermediates"]))
    (logits, _), state = apply(variables, x)
    expected = FIXTURE[f"logits/{name}"]
    np.testing.assert_allclose(np.asarray(logits), expected, rtol=2e-4, atol=2e-4 * np.abs(expected).max())
    if name.startswith("vgg-att"):
        maps = np.concatenate([np.asarray(m).reshape(-1) for m in state["intermediates"]["attention"]])
        np.testing.assert_allclose(maps, FIXTURE[f"maps/{name}"], rtol=1e-3, atol=1e-6)


# ------------------------------------------------------------------ gradients
@pytest.mark.parametrize("name", ["vgg-att3-concat-pc", "vgg-att2-indep-pc"])
def test_gradient_averaging_is_the_authors_backward(name):
    x = reference_input((2, 16, 16, 3), 1)
    labels = jnp.asarray(FIXTURE["labels"])
    results = {}
    for mode, averaging in (("true", False), ("authors", True)):
        model = create(name, 10, gradient_averaging=averaging)
        variables = reference_variables(model, 16)

        def loss(params, model=model, variables=variables):
            logits, _ = model.apply({**variables, "params": params}, x, train=False)
            return jnp.mean(-jax.nn.log_softmax(logits)[jnp.arange(2), labels])

        grads = jax.jit(jax.grad(loss))(variables["params"])
        flat = {torch_name(("params",) + path): leaf
                for path, leaf in jax.tree_util.tree_flatten_with_path(grads)[0]}
        results[mode] = flat
        prefix = f"grad/{mode}/{name}/"
        tensors = [key[len(prefix):] for key in FIXTURE.files if key.startswith(prefix)]
        assert len(tensors) >= 8
        for tensor in tensors:
            expected = FIXTURE[prefix + tensor]
            ours = to_torch_layout(np.asarray(flat[tensor]))
            np.testing.assert_allclose(ours, expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max() + 1e-6,
                                       err_msg=f"{mode} {tensor}")
    # 'pc': c_i = u.(l_i + g) + b = u.l_i + (u.g + b), and the softmax over i cancels the constant, so g (conv14,
    # conv15, the global Linear, the level-1 projection) and u's bias never reach the logits: zero gradient.
    for tensor in ("conv15.conv.bias", "global.bias"):
        assert np.abs(FIXTURE[f"grad/true/{name}/{tensor}"]).max() < 1e-12
        assert np.abs(np.asarray(results["true"][tensor])).max() < 1e-5
    # the averaging leaves the attention units and heads alone; l3's one live consumer (its attention unit, g
    # being dead) gets half its gradient, so conv13's gradient is exactly halved; deeper convs get less
    ratio = lambda tensor: (np.linalg.norm(results["authors"][tensor])  # noqa: E731
                            / np.linalg.norm(results["true"][tensor]))
    assert ratio("attention2.u.weight") == pytest.approx(1.0, rel=1e-5)
    assert ratio("conv13.conv.bias") == pytest.approx(0.5, rel=1e-4)
    assert ratio("conv1.conv.bias") < 0.4
