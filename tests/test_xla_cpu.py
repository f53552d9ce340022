"""``at_jax.xla_cpu``: the XLA:CPU flags ``import at_jax`` appends to ``XLA_FLAGS`` (YNNPACK
convolutions off), their opt-outs, and that convolutions and their gradients then compile to XLA's
own (Eigen) convolutions with the same values."""
import os
import re
import subprocess
import sys
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from at_jax import xla_cpu

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAG = xla_cpu.CPU_XLA_FLAGS[0]


def applied(environ: dict, jaxlib_version: str = "0.10.2", started: bool = False) -> tuple[bool, dict]:
    with mock.patch.object(xla_cpu, "_jaxlib_version", return_value=jaxlib_version), \
            mock.patch.object(xla_cpu, "_backends_started", return_value=started):
        result = xla_cpu.apply_cpu_flags(environ)
    return result, environ


def test_appends_to_existing_flags():
    assert applied({}) == (True, {"XLA_FLAGS": FLAG})
    assert applied({"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}) == (
        True, {"XLA_FLAGS": f"--xla_force_host_platform_device_count=2 {FLAG}"})


@pytest.mark.parametrize("environ, version, started", [
    ({"AT_JAX_XLA_CPU_FLAGS": "0"}, "0.10.2", False),                      # opt-out
    ({"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type="}, "0.10.2", False),  # user's own choice
    ({}, "0.4.30", False),                                                 # jaxlib too old
    ({}, "0.10.2", True),                                                  # too late: backend started
])
def test_leaves_flags_alone(environ, version, started):
    before = dict(environ)
    assert applied(environ, version, started) == (False, before)


def test_version_parsing():
    assert xla_cpu._version_tuple("0.10.2") == (0, 10, 2)
    assert xla_cpu._version_tuple("0.11.0.dev20261101") == (0, 11, 0)
    assert xla_cpu._version_tuple("0.4.30") < xla_cpu.MIN_JAXLIB


def test_import_sets_flag_in_a_fresh_process():
    code = "import os, at_jax; print(os.environ.get('XLA_FLAGS', ''))"
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "AT_JAX_XLA_CPU_FLAGS")}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=dict(env, PYTHONPATH=REPO_ROOT),
                         capture_output=True, text=True, check=True).stdout.strip()
    expected = FLAG if xla_cpu._version_tuple(xla_cpu._jaxlib_version()) >= xla_cpu.MIN_JAXLIB else ""
    assert out == expected


def ynn_convolutions(hlo: str) -> list[str]:
    """Names of the computations called by a ``__ynn_fusion`` that contain a convolution."""
    called = set(re.findall(r"calls=(%[\w.\-]+).*__ynn_fusion", hlo))
    blocks = re.split(r"\n(?=\S)", hlo)
    return [name for name in called
            if any(block.startswith(name + " ") and "convolution(" in block for block in blocks)]


def conv(x, w, stride, padding):
    return lax.conv_general_dilated(x, w, (stride, stride), ((padding, padding),) * 2,
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU flags")
@pytest.mark.parametrize("height, cin, cout, kernel, stride", [
    (16, 32, 32, 3, 1), (16, 32, 64, 3, 2), (16, 32, 64, 1, 2), (8, 3, 16, 3, 1)])
def test_conv_and_gradients_compile_without_ynnpack(height, cin, cout, kernel, stride):
    """Where the flag applies (at_jax imported before JAX started, as in this test module), no
    convolution of the value, input gradient or weight gradient is handed to YNNPACK; values and
    both gradients agree with a float64 numpy reference either way."""
    rng = np.random.RandomState(0)
    x = rng.randn(4, height, height, cin).astype(np.float32)
    w = (rng.randn(kernel, kernel, cin, cout) / np.sqrt(kernel * kernel * cin)).astype(np.float32)
    padding = (kernel - 1) // 2

    def loss(x, w):
        return jnp.sum(jnp.sin(conv(x, w, stride, padding)))

    function = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    if FLAG in os.environ.get("XLA_FLAGS", ""):
        assert ynn_convolutions(function.lower(x, w).compile().as_text()) == []
    value, (dx, dw) = function(x, w)
    # float64 numpy reference: shifted windows of the padded input
    xp = np.pad(x.astype(np.float64), ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    out = (height + 2 * padding - kernel) // stride + 1
    y = np.zeros((4, out, out, cout))
    for i in range(kernel):
        for j in range(kernel):
            patch = xp[:, i:i + stride * (out - 1) + 1:stride, j:j + stride * (out - 1) + 1:stride, :]
            y += patch @ w[i, j].astype(np.float64)
    np.testing.assert_allclose(float(value), np.sum(np.sin(y)), rtol=1e-4)
    gy = np.cos(y)
    dw_ref = np.zeros(w.shape)
    dxp = np.zeros(xp.shape)
    for i in range(kernel):
        for j in range(kernel):
            sl = (slice(None), slice(i, i + stride * (out - 1) + 1, stride),
                  slice(j, j + stride * (out - 1) + 1, stride), slice(None))
            dw_ref[i, j] = np.einsum("nhwc,nhwo->co", xp[sl], gy)
            dxp[sl] += gy @ w[i, j].astype(np.float64).T
    dx_ref = dxp[:, padding:padding + height, padding:padding + height, :]
    np.testing.assert_allclose(np.asarray(dw), dw_ref, rtol=1e-4, atol=1e-4 * np.abs(dw_ref).max())
    np.testing.assert_allclose(np.asarray(dx), dx_ref, rtol=1e-4, atol=1e-4 * np.abs(dx_ref).max())
