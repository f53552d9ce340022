"""``at_jax.training.cpu_defaults``: the XLA:CPU flags the entry points append to ``XLA_FLAGS`` (YNNPACK
convolutions off), when they do not (opt-out, the user's own setting, a jaxlib that refuses them), how
jaxlib is asked (a child process, cached), that ``import at_jax`` changes nothing while ``python -m
at_jax.train`` / ``at_jax.experiment`` apply the flags before JAX starts, that convolutions and their
gradients then compile to XLA's own (Eigen) convolutions with the same values, and the CPU defaults of
steps per call and multi-run mode."""
import json
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

from at_jax.training import cpu_defaults

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
FLAG = cpu_defaults.CPU_XLA_FLAGS[0]
OPTION = FLAG.split("=")[0]
OTHER_FLAG = "--xla_force_host_platform_device_count=2"
BOGUS_FLAG = "--xla_no_such_flag_for_at_jax_test"
# The YNNPACK fusion option (and its convolution default) came with jaxlib 0.10.
JAXLIB_HAS_OPTION = tuple(int(part) for part in re.findall(r"\d+", jax.lib.__version__)[:2]) >= (0, 10)
needs_option = pytest.mark.skipif(not JAXLIB_HAS_OPTION, reason="jaxlib < 0.10 has no YNNPACK fusion option")
on_cpu = pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU")


# --- apply_xla_cpu_flags (jaxlib's answer injected) -------------------------------------------------------

class Accepts:
    """A fake ``accepts``: records what it was asked, answers ``answer``."""

    def __init__(self, answer: bool):
        self.answer, self.asked = answer, []

    def __call__(self, flags):
        self.asked.append(tuple(flags))
        return self.answer


def test_appends_to_existing_flags():
    accepts = Accepts(True)
    environ = {}
    assert cpu_defaults.apply_xla_cpu_flags(environ, accepts=accepts) is True
    assert environ == {"XLA_FLAGS": FLAG}
    assert accepts.asked == [cpu_defaults.CPU_XLA_FLAGS]  # asked about exactly the flags it appends
    environ = {"XLA_FLAGS": OTHER_FLAG, "AT_JAX_XLA_CPU_FLAGS": "1"}
    assert cpu_defaults.apply_xla_cpu_flags(environ, accepts=accepts) is True
    assert environ == {"XLA_FLAGS": f"{OTHER_FLAG} {FLAG}", "AT_JAX_XLA_CPU_FLAGS": "1"}
    environ = {"XLA_FLAGS": "  "}
    assert cpu_defaults.apply_xla_cpu_flags(environ, accepts=accepts) is True
    assert environ == {"XLA_FLAGS": FLAG}


@pytest.mark.parametrize("environ", [
    {"AT_JAX_XLA_CPU_FLAGS": "0"},                                                  # opt-out
    {"AT_JAX_XLA_CPU_FLAGS": " 0 ", "XLA_FLAGS": OTHER_FLAG},                       # opt-out, spaces
    {"XLA_FLAGS": f"{OTHER_FLAG} {OPTION}=individual_convolution"},                 # the user's own choice
    {"XLA_FLAGS": f"{OPTION}="},                                                    # ... even empty
])
def test_opt_out_and_users_own_setting_win_without_asking_jaxlib(environ):
    before = dict(environ)
    accepts = Accepts(True)
    assert cpu_defaults.apply_xla_cpu_flags(environ, accepts=accepts) is False
    assert environ == before
    assert accepts.asked == []  # no child process started for nothing


@pytest.mark.parametrize("environ", [{}, {"XLA_FLAGS": OTHER_FLAG}])
def test_flags_not_appended_when_jaxlib_refuses_them(environ):
    before = dict(environ)
    accepts = Accepts(False)
    assert cpu_defaults.apply_xla_cpu_flags(environ, accepts=accepts) is False
    assert environ == before
    assert accepts.asked == [cpu_defaults.CPU_XLA_FLAGS]


def test_default_environment_is_os_environ(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", OTHER_FLAG)
    monkeypatch.delenv("AT_JAX_XLA_CPU_FLAGS", raising=False)
    assert cpu_defaults.apply_xla_cpu_flags(accepts=Accepts(True)) is True
    assert os.environ["XLA_FLAGS"] == f"{OTHER_FLAG} {FLAG}"  # monkeypatch restores it afterwards


def test_benchmarks_use_the_same_function(monkeypatch):
    sys.path.insert(0, REPO_ROOT)
    try:
        from benchmarks import common  # pylint: disable=import-outside-toplevel
    finally:
        sys.path.remove(REPO_ROOT)
    called = []
    monkeypatch.setattr(cpu_defaults, "apply_xla_cpu_flags", lambda: called.append(1) or True)
    assert common.apply_xla_cpu_flags() is True and called == [1]


# --- jaxlib_accepts: asks a child process, caches the answer ----------------------------------------------

def cache_file(base) -> str:
    return os.path.join(str(base), "at_jax", "xla_cpu_flags.json")


def test_jaxlib_accepts_asks_jaxlib_and_caches_the_answer(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert not os.path.exists(cache_file(tmp_path))
    assert cpu_defaults.jaxlib_accepts((BOGUS_FLAG,)) is False  # XLA aborts on a flag it does not know
    with open(cache_file(tmp_path)) as file:
        assert list(json.load(file).values()) == [False]
    known = cpu_defaults.jaxlib_accepts(cpu_defaults.CPU_XLA_FLAGS)
    if JAXLIB_HAS_OPTION:
        assert known is True
    with open(cache_file(tmp_path)) as file:
        cache = json.load(file)
    identity = cpu_defaults._jaxlib_identity()  # pylint: disable=protected-access
    assert jax.lib.__version__ in identity
    assert cache == {f"{identity} {BOGUS_FLAG}": False, f"{identity} {' '.join(cpu_defaults.CPU_XLA_FLAGS)}": known}

    def no_child(*args, **kwargs):
        raise AssertionError("asked jaxlib again instead of using the cache")

    monkeypatch.setattr(cpu_defaults.subprocess, "run", no_child)
    assert cpu_defaults.jaxlib_accepts((BOGUS_FLAG,)) is False
    assert cpu_defaults.jaxlib_accepts(cpu_defaults.CPU_XLA_FLAGS) is known
    with pytest.raises(AssertionError, match="asked jaxlib again"):  # other flags: not in the cache
        cpu_defaults.jaxlib_accepts((BOGUS_FLAG + "_2",))


def test_jaxlib_accepts_child_environment_and_unreadable_cache(tmp_path, monkeypatch):
    """The child gets exactly the flags (CPU backend, opt-out set); a corrupt cache is asked again and
    rewritten; a child that times out is not cached."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("XLA_FLAGS", OTHER_FLAG)
    os.makedirs(os.path.dirname(cache_file(tmp_path)))
    with open(cache_file(tmp_path), "w") as file:
        file.write("{not json")
    calls = []

    def fake_run(argv, env, **kwargs):
        calls.append(env)
        assert argv[0] == sys.executable
        return subprocess.CompletedProcess(argv, 0)

    monkeypatch.setattr(cpu_defaults.subprocess, "run", fake_run)
    assert cpu_defaults.jaxlib_accepts(("--a=1", "--b=2")) is True
    assert len(calls) == 1
    assert (calls[0]["XLA_FLAGS"], calls[0]["JAX_PLATFORMS"], calls[0]["AT_JAX_XLA_CPU_FLAGS"]) == (
        "--a=1 --b=2", "cpu", "0")
    with open(cache_file(tmp_path)) as file:
        assert list(json.load(file).values()) == [True]

    def timing_out(argv, **kwargs):
        raise subprocess.TimeoutExpired(argv, 300)

    monkeypatch.setattr(cpu_defaults.subprocess, "run", timing_out)
    assert cpu_defaults.jaxlib_accepts(("--c=3",)) is False
    with open(cache_file(tmp_path)) as file:
        assert len(json.load(file)) == 1  # the timeout is not remembered


# --- convolutions: values either way, no YNNPACK convolution where the flags apply ------------------------

SHAPES = [(16, 32, 32, 3, 1), (16, 32, 64, 3, 2), (16, 32, 64, 1, 2), (8, 3, 16, 3, 1)]


def ynn_convolutions(hlo: str) -> list[str]:
    """Names of the computations called by a ``__ynn_fusion`` that contain a convolution."""
    called = set(re.findall(r"calls=(%[\w.\-]+).*__ynn_fusion", hlo))
    blocks = re.split(r"\n(?=\S)", hlo)
    return [name for name in called
            if any(block.startswith(name + " ") and "convolution(" in block for block in blocks)]


def conv(x, w, stride, padding):
    return lax.conv_general_dilated(x, w, (stride, stride), ((padding, padding),) * 2,
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


def check_conv_and_gradients(height, cin, cout, kernel, stride) -> int:
    """Asserts that a convolution's value, input gradient and weight gradient agree with a float64 numpy
    reference; returns how many convolutions the compiled program hands to YNNPACK."""
    rng = np.random.RandomState(0)
    x = rng.randn(4, height, height, cin).astype(np.float32)
    w = (rng.randn(kernel, kernel, cin, cout) / np.sqrt(kernel * kernel * cin)).astype(np.float32)
    padding = (kernel - 1) // 2

    def loss(x, w):
        return jnp.sum(jnp.sin(conv(x, w, stride, padding)))

    function = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    count = len(ynn_convolutions(function.lower(x, w).compile().as_text()))
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
    return count


@on_cpu
@pytest.mark.parametrize("shape", SHAPES)
def test_conv_and_gradients_with_this_process_flags(shape):
    """Values and gradients with whatever XLA_FLAGS this test process has (XLA's default here, since
    importing at_jax sets nothing)."""
    count = check_conv_and_gradients(*shape)
    if FLAG in os.environ.get("XLA_FLAGS", ""):
        assert count == 0


# --- fresh processes: import at_jax changes nothing; the entry points apply the flags ---------------------

def clean_environment(cache_home, **settings) -> dict:
    """This environment without XLA_FLAGS / the opt-out, on CPU, with its own flag cache, plus ``settings``."""
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("XLA_FLAGS", "AT_JAX_XLA_CPU_FLAGS")}
    environment.update(PYTHONPATH=REPO_ROOT, JAX_PLATFORMS="cpu", XDG_CACHE_HOME=str(cache_home), **settings)
    return environment


def run_python(code: str, environment: dict, *arguments: str) -> list[str]:
    process = subprocess.run([sys.executable, "-c", code, *arguments], cwd=REPO_ROOT, env=environment,
                             capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    return process.stdout.strip().splitlines()


# Counts the YNNPACK convolutions of one 32-channel convolution and its gradients (check_conv_and_gradients).
PROBE = (f"import sys; sys.path.insert(0, {TESTS_DIR!r}); import test_cpu_defaults as t; "
         f"print('YNN_CONVOLUTIONS', t.check_conv_and_gradients(*t.SHAPES[0]))")


@on_cpu
@pytest.mark.parametrize("xla_flags", ["", OTHER_FLAG])
def test_import_at_jax_leaves_xla_flags_alone(tmp_path, xla_flags):
    code = ("import os, at_jax, jax; jax.numpy.zeros(1); print('XLA_FLAGS=' + os.environ.get('XLA_FLAGS', ''))\n"
            + PROBE)
    lines = run_python(code, clean_environment(tmp_path, XLA_FLAGS=xla_flags))
    assert lines[0] == "XLA_FLAGS=" + xla_flags
    assert not os.path.exists(os.path.join(str(tmp_path), "at_jax"))  # jaxlib not even asked
    if JAXLIB_HAS_OPTION:  # XLA's default stays in effect: YNNPACK convolutions (the probe can see them)
        assert lines[-1].startswith("YNN_CONVOLUTIONS ") and int(lines[-1].split()[1]) > 0


@needs_option
@pytest.mark.parametrize("settings, expected", [
    ({}, f"True {OTHER_FLAG} {FLAG}"),
    ({"AT_JAX_XLA_CPU_FLAGS": "0"}, f"False {OTHER_FLAG}"),
])
def test_apply_in_a_fresh_process_asks_the_real_jaxlib(tmp_path, settings, expected):
    code = ("from at_jax.training.cpu_defaults import apply_xla_cpu_flags; import os; "
            "print(apply_xla_cpu_flags(), os.environ['XLA_FLAGS'])")
    assert run_python(code, clean_environment(tmp_path, XLA_FLAGS=OTHER_FLAG, **settings)) == [expected]
    assert os.path.exists(cache_file(tmp_path)) == (not settings)


# Runs an entry point's main() (absl flags and all) with the training itself replaced by a stub that
# reports XLA_FLAGS and the probe; the stub is called where the real training would start JAX.
ENTRY_POINT = """
import os, sys
import at_jax.training, at_jax.experiments.run

def stub(*args, **kwargs):
    print('XLA_FLAGS=' + os.environ.get('XLA_FLAGS', ''))
    sys.path.insert(0, {tests!r}); import test_cpu_defaults as t
    print('YNN_CONVOLUTIONS', t.check_conv_and_gradients(*t.SHAPES[0]))
    sys.stdout.flush()
    os._exit(0)

at_jax.training.train_and_evaluate = stub
at_jax.experiments.run.run_experiment = stub
import importlib
module = importlib.import_module(sys.argv[1])
sys.argv = ['at_jax'] + sys.argv[2:]
module.run()
""".format(tests=TESTS_DIR)


@on_cpu
@needs_option
@pytest.mark.parametrize("module, arguments", [
    ("at_jax.train", ["--config.pipeline="]),
    ("at_jax.experiment", ["--config=configs/experiments/smoke.py"]),
])
def test_entry_points_apply_the_flags_before_jax_starts(tmp_path, module, arguments):
    """The flag is in XLA_FLAGS where training starts, and in effect: no convolution goes to YNNPACK."""
    lines = run_python(ENTRY_POINT, clean_environment(tmp_path, XLA_FLAGS=OTHER_FLAG), module,
                       f"--workdir={tmp_path / 'work'}", *arguments)
    assert f"XLA_FLAGS={OTHER_FLAG} {FLAG}" in lines
    assert lines[-1] == "YNN_CONVOLUTIONS 0"
    assert os.path.exists(cache_file(tmp_path))


@on_cpu
@needs_option
def test_conv_and_gradients_compile_without_ynnpack_where_the_flags_apply(tmp_path):
    """After apply_xla_cpu_flags (before JAX starts), no convolution of the value, input gradient or weight
    gradient is handed to YNNPACK, and values and both gradients still agree with the float64 reference."""
    code = ("from at_jax.training.cpu_defaults import apply_xla_cpu_flags; assert apply_xla_cpu_flags()\n"
            f"import sys; sys.path.insert(0, {TESTS_DIR!r}); import test_cpu_defaults as t\n"
            "print([t.check_conv_and_gradients(*shape) for shape in t.SHAPES])")
    assert run_python(code, clean_environment(tmp_path)) == [str([0] * len(SHAPES))]


# --- steps per call, multi-run mode -------------------------------------------------------------------------

@on_cpu
def test_cpu_defaults_on_this_machine():
    assert cpu_defaults.default_steps_per_call() == 1
    assert cpu_defaults.default_multi_run_mode() == "unroll"


@pytest.mark.parametrize("backend, steps, mode", [("cpu", 1, "unroll"), ("gpu", 10, "vmap"), ("tpu", 10, "vmap")])
def test_defaults_per_backend(backend, steps, mode):
    with mock.patch.object(jax, "default_backend", return_value=backend):
        assert (cpu_defaults.default_steps_per_call(), cpu_defaults.default_multi_run_mode()) == (steps, mode)
