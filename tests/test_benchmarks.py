"""Smoke tests of the benchmark harness on CI-sized settings (CPU, tiny WRN-10-1 pair, batch 8).

The two jax benchmarks run as subprocesses at the same time (compilation dominates; two cores), print
one JSON object each, and must not import torch. The torch side runs only where torch is installed.
XLA's LLVM optimisation is turned down in these subprocesses: it cuts compile time about threefold, and
the smoke tests check the harness, not the speed.
"""
import importlib.util
import json
import os
import subprocess
import sys

import jax
import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--student", "wrn-10-1", "--teacher", "wrn-10-1", "--batch-size", "8", "--json"]
FAST_COMPILE = " --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
# Runs a benchmark script as __main__, then reports whether torch got imported along the way.
RUNNER = ("import runpy, sys; script = sys.argv[1]; sys.argv = sys.argv[1:]; "
          "runpy.run_path(script, run_name='__main__'); "
          "print('TORCH_IMPORTED=%s' % ('torch' in sys.modules))")


def start(script: str, *arguments: str) -> subprocess.Popen:
    xla_flags = os.environ.get("XLA_FLAGS", "") + FAST_COMPILE
    environment = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO_ROOT, XLA_FLAGS=xla_flags)
    return subprocess.Popen([sys.executable, "-c", RUNNER, os.path.join(REPO_ROOT, "benchmarks", script),
                             *arguments], cwd=REPO_ROOT, env=environment, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> tuple[dict, bool]:
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-2000:]
    lines = stdout.strip().splitlines()
    json_lines = [line for line in lines if line.startswith("{")]
    assert len(json_lines) == 1, stdout  # exactly one JSON object
    return json.loads(json_lines[0]), lines[-1] == "TORCH_IMPORTED=True"


@pytest.fixture(scope="module")
def torch_process():
    """Started early so that it overlaps the jax runs; None where torch is not installed."""
    if importlib.util.find_spec("torch") is None:
        return None
    return start("step_throughput.py", *TINY, "--framework", "torch", "--method", "at+kd", "--repeats", "2",
                 "--warmup", "1")


@pytest.fixture(scope="module")
def jax_results(torch_process):
    step = start("step_throughput.py", *TINY, "--framework", "jax", "--method", "at", "--repeats", "2",
                 "--warmup", "1")
    # 32 examples / batch 8 = 4 steps = 2 calls of K=2: one compiled shape, augmentation in the step.
    epoch = start("epoch_throughput.py", *TINY, "--framework", "jax", "--method", "none", "--num-train", "32",
                  "--steps-per-call", "2", "--scan-unroll", "--warmup", "1")
    return finish(step), finish(epoch)


def test_step_throughput_jax_reports_positive_throughput(jax_results):
    (result, torch_imported), _ = jax_results
    assert not torch_imported
    assert result["framework"] == "jax" and result["method"] == "at" and result["dtype"] == "float32"
    assert (result["student"], result["teacher"], result["batch_size"]) == ("wrn-10-1", "wrn-10-1", 8)
    assert result["repeats"] == 2 and result["warmup"] == 1 and result["steps_per_call"] == 1
    assert result["device"] and result["jax_version"]
    assert result["images_per_second"] > 0 and result["median_step_seconds"] > 0
    assert result["images_per_second"] == pytest.approx(8 / result["median_step_seconds"])
    # XLA cost analysis: a WRN-10-1 step on 8 images is far above 10 MFLOP; achieved = flops / time
    assert result["flops_per_step"] > 1e7
    assert result["achieved_flops_per_second"] == pytest.approx(
        result["flops_per_step"] / result["median_step_seconds"])


def test_epoch_throughput_jax_counts_whole_steps(jax_results):
    _, (result, torch_imported) = jax_results
    assert not torch_imported
    assert result["framework"] == "jax" and result["method"] == "none" and result["teacher"] is None
    assert result["num_train"] == 32 and result["steps_per_epoch"] == 4 and result["steps_per_call"] == 2
    assert result["scan_unroll"] is True
    assert result["images_per_second"] > 0
    assert result["images_per_second"] == pytest.approx(32 / result["median_epoch_seconds"])


def test_step_throughput_torch_when_installed(torch_process):
    pytest.importorskip("torch")
    result, torch_imported = finish(torch_process)
    assert torch_imported and result["framework"] == "torch" and result["compile"] is False
    assert result["images_per_second"] > 0 and result["torch_version"]


def test_bad_arguments_exit_with_an_error():
    script = os.path.join(REPO_ROOT, "benchmarks", "step_throughput.py")
    process = subprocess.run([sys.executable, script, "--framework", "jax", "--repeats", "0", "--json"],
                             capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert process.returncode != 0 and "error" in process.stderr


def test_step_throughput_parallel_runs_counts_every_run():
    """--parallel-runs S: one vmapped step of S students (config.parallel_runs); images/s counts all S."""
    sys.path.insert(0, REPO_ROOT)
    try:
        from benchmarks import step_throughput  # pylint: disable=import-outside-toplevel
    finally:
        sys.path.pop(0)
    args = step_throughput.parse_args([*TINY, "--framework", "jax", "--method", "at", "--repeats", "1",
                                       "--warmup", "1", "--parallel-runs", "2"])
    result = step_throughput.run_one(args)
    assert result["parallel_runs"] == 2
    assert result["images_per_second"] == pytest.approx(2 * 8 / result["median_step_seconds"])
    assert result["flops_per_call"] > 2e7
    with pytest.raises(SystemExit, match="jax setting"):
        step_throughput.run_one(step_throughput.parse_args([*TINY, "--framework", "torch", "--parallel-runs", "2"]))


def test_benchmarks_import_without_ml_collections_or_tfds():
    """The GPU machines' image has jax, flax, optax, orbax and torch only: the harness must not need more."""
    blocker = ("import sys, importlib.abc\n"
               "class Block(importlib.abc.MetaPathFinder):\n"
               "    def find_spec(self, name, path, target=None):\n"
               "        if name.split('.')[0] in ('ml_collections', 'tensorflow_datasets', 'tensorflow'):\n"
               "            raise ImportError('not on the GPU image: ' + name)\n"
               "sys.meta_path.insert(0, Block())\n"
               "from benchmarks import jax_reference, step_throughput, epoch_throughput, common\n"
               "print('IMPORTED')\n")
    result = subprocess.run([sys.executable, "-c", blocker], cwd=REPO_ROOT, capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=REPO_ROOT, JAX_PLATFORMS="cpu"), timeout=120)
    assert result.returncode == 0 and "IMPORTED" in result.stdout, result.stderr[-2000:]


def test_jax_reference_builds_what_the_trainer_builds(tmp_path):
    """loss_config(method) is the build_objective fields dict; the benchmark's initial state of seeds
    s, s+1 is the trainer's own (set_up(...).init_state of a parallel_runs=2 job with seed s)."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    from at_jax.losses import build_objective  # pylint: disable=import-outside-toplevel
    from at_jax.training import multi_run, setup  # pylint: disable=import-outside-toplevel
    from trainer_utils import tiny_config  # pylint: disable=import-outside-toplevel
    sys.path.insert(0, REPO_ROOT)
    try:
        from benchmarks import jax_reference  # pylint: disable=import-outside-toplevel
    finally:
        sys.path.pop(0)
    assert jax_reference.loss_config("none") == {}
    assert jax_reference.loss_config("at") == {"at_beta": 1e3}
    assert jax_reference.loss_config("kd") == {"kd_alpha": 0.9, "kd_temperature": 4.0}
    assert jax_reference.loss_config("at+kd") == {"at_beta": 1e3, "kd_alpha": 0.9, "kd_temperature": 4.0}
    assert jax_reference.loss_config("grad_at") == {"grad_at_beta": 1.0}
    assert [build_objective(jax_reference.loss_config(method)).uses_teacher
            for method in jax_reference.METHODS] == [False, True, True, True, True]
    with pytest.raises(ValueError, match="unknown method"):
        jax_reference.loss_config("fitnets")

    config = tiny_config(seed=3, parallel_runs=2)
    job = multi_run.plan_job(config, str(tmp_path))
    assert job.seeds == [3, 4]
    trainer = setup.set_up(config, job)
    trainer_state = trainer.init_state(np.asarray(job.seeds, np.int32), None)  # as training.loop does
    benchmark = jax_reference.make_jax_step(
        config.model, None, "none", num_classes=trainer.inputs.num_classes, dtype="float32", steps_per_call=1,
        pad=0, flip=False, mean=trainer.inputs.mean, std=trainer.inputs.std,
        image_shape=trainer.inputs.image_shape, seed=3, parallel_runs=2)
    for key in ("params", "batch_stats", "rng"):
        np.testing.assert_equal(jax.device_get(benchmark.state[key]), jax.device_get(trainer_state[key]))
    # different seeds, different weights (the comparison above is not between two constants)
    kernel = max(jax.tree.leaves(benchmark.state["params"]), key=lambda leaf: leaf.size)
    assert not np.array_equal(np.asarray(kernel[0]), np.asarray(kernel[1]))


def test_conv_kernels_and_step_components_run():
    """The per-convolution and per-component scripts behind BENCHMARKS.md's profile tables (tiny batch)."""
    sys.path.insert(0, REPO_ROOT)
    try:
        from benchmarks import conv_kernels, step_components  # pylint: disable=import-outside-toplevel
    finally:
        sys.path.pop(0)
    rows = conv_kernels.main(["--framework", "jax", "--batch-size", "2", "--repeats", "1", "--alternatives",
                              "--first", "3"])
    assert [row["conv"] for row in rows] == ["H32 3->16 k3 s1", "H32 16->16 k3 s1", "H32 16->32 k3 s2"]
    assert all(row[key] > 0 for row in rows for key in ("forward_ms", "input_grad_ms", "weight_grad_ms",
                                                       "weight_grad_dots_ms", "weight_grad_im2col_ms"))
    parts = step_components.main(["--framework", "jax", "--student", "wrn-10-1", "--teacher", "wrn-10-1",
                                  "--batch-size", "2", "--repeats", "1"])
    assert parts["teacher_eval_forward_seconds"] > 0 and parts["student_forward_backward_seconds"] > 0


def test_input_throughput_jax_on_a_generated_photo_folder(tmp_path):
    script = os.path.join(REPO_ROOT, "benchmarks", "input_throughput.py")
    made = subprocess.run([sys.executable, script, "--make-data", str(tmp_path), "--images", "20"],
                          capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert made.returncode == 0, made.stderr[-2000:]
    assert len(os.listdir(tmp_path / "train")) == 10
    result, torch_imported = finish(start("input_throughput.py", "--framework", "jax", "--data-dir", str(tmp_path),
                                          "--workers", "1", "--batch-size", "4", "--image-size", "64",
                                          "--warmup", "1", "--batches", "3", "--json"))
    assert result["images_per_second"] > 0 and result["workers"] == 1 and not torch_imported
    assert result["ms_per_image_per_worker"] == pytest.approx(1000 / result["images_per_second"], rel=1e-2)
