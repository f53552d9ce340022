"""python -m at_jax.compile_for: a run built from shapes as the trainer builds it, compiled, and XLA's figures.

The TPU tests (marked ``tpu_compile``) run where libtpu is installed (``pip install -e ".[tpu-compile]"``;
.ci/run installs it after the main suite); the rest compile for this machine's CPU devices, through the same
code.
"""
import functools
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from at_jax.data.shapes import DatasetShape, dataset_shape
from at_jax.data.views import ImageViews
from at_jax.errors import DatasetError
from at_jax.planning import crash_guard, max_batch
from at_jax.planning.abstract_job import abstract_setup, step_arguments
from at_jax.planning.compiled import array_bytes, collectives_of, compile_job, out_of_memory
from at_jax.training import multi_run
from at_jax.training.cpu_defaults import default_multi_run_mode, default_steps_per_call
from at_jax.training.setup import set_up
from one_conv_config import CONV_FLOPS_PER_IMAGE, PARAMETER_BYTES
from trainer_utils import REPO, tiny_config

HAS_LIBTPU = importlib.util.find_spec("libtpu") is not None


def tpu_compile(test):
    """Marks a test that compiles for a TPU topology (``pytest -m tpu_compile``); skipped without libtpu."""
    return pytest.mark.tpu_compile(
        pytest.mark.skipif(not HAS_LIBTPU, reason="needs libtpu: pip install -e '.[tpu-compile]'")(test))


ONE_CONV_CONFIG = os.path.join(REPO, "tests", "one_conv_config.py")


def compile_for(*args, env=None, timeout=900):
    """``python -m at_jax.compile_for ARGS`` in a fresh process."""
    return subprocess.run([sys.executable, "-m", "at_jax.compile_for", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=timeout, env={**os.environ, **(env or {})})


def test_the_platform_decides_the_trainer_defaults():
    """A run compiled for a TPU gets the accelerator's defaults on a CPU machine (10 steps per call, vmapped
    runs), not the CPU's."""
    assert (default_steps_per_call("tpu"), default_multi_run_mode("tpu")) == (10, "vmap")
    assert (default_steps_per_call("cpu"), default_multi_run_mode("cpu")) == (1, "unroll")
    assert multi_run.resolve_mode("auto", 3, "tpu") == "vmap"


def test_abstract_job_lowers_to_the_trainers_program(teacher_dir):
    """Built from shapes, the AT job's train call and eval step lower to the same program as the trainer's
    own set-up over real data and the loaded teacher."""
    config = tiny_config(**{"loss.at_beta": 1e3, "teacher.workdir": teacher_dir})
    real = set_up(config, multi_run.plan_job(config, "unused"))
    abstract, job = abstract_setup(config, jax.devices())
    arguments = step_arguments(abstract, job, steps_per_call=1)
    state = real.init_state(np.asarray(job.seeds, np.int32), real.teacher_variables)
    real_arguments = (state, jax.tree.map(jnp.zeros_like, arguments.train[1]), real.teacher_variables, real.data,
                      real.inputs.train_inputs(list(job.seeds), 0, 1))
    assert (abstract.train_steps.lower(*arguments.train).as_text()
            == real.train_steps.lower(*real_arguments).as_text())
    batch = next(real.inputs.eval_batches())
    assert (abstract.eval_step.lower(*arguments.eval).as_text()
            == real.eval_step.lower(state["params"]["model"], state["batch_stats"], batch).as_text())


def test_figures_match_a_hand_count():
    """one-conv on one CPU device: the eval step's FLOPs within 10 % of its convolution's (the head, pooling
    and loss add the rest), its argument bytes = parameters + the eval batch exactly; the train step's FLOPs
    about twice the convolution's."""
    config = tiny_config(model="one-conv")
    setup, job = abstract_setup(config, jax.devices()[:1])
    train, evaluation = compile_job(setup, step_arguments(setup, job))
    batch = config.eval_batch_size
    assert CONV_FLOPS_PER_IMAGE * batch <= evaluation.flops <= 1.1 * CONV_FLOPS_PER_IMAGE * batch
    assert evaluation.memory.arguments == PARAMETER_BYTES + batch * (16 * 16 * 3 + 4 + 4)
    # The train step: the forward convolution and the weight gradient's (the input, data, needs no gradient).
    assert 2 * CONV_FLOPS_PER_IMAGE * config.batch_size <= train.flops <= 2.3 * CONV_FLOPS_PER_IMAGE * config.batch_size
    assert train.memory.total > train.memory.arguments > 0 and train.compile_seconds > 0


@pytest.mark.parametrize("overrides", [
    {"loss.factt_beta": 1.0, "loss.kd_alpha": 0.9}, {"loss.grad_at_beta": 1.0},
    {"loss.at_beta": 1e3, "parallel_runs": 2, "parallel_mode": "vmap"},
], ids=["factt_kd", "grad_at", "parallel_runs"])
def test_every_method_compiles_from_shapes(overrides):
    """F-ActT (its adapters initialised from shapes) with KD, gradient AT (nested grad) and a multi-run job of
    AT compile without a teacher checkpoint or data (AT alone: the lowering test above)."""
    config = tiny_config(**overrides, **{"teacher.model": "wrn-10-2"})
    devices = jax.devices()
    setup, job = abstract_setup(config, devices)
    train, evaluation = compile_job(setup, step_arguments(setup, job))
    assert train.flops > evaluation.flops > 0
    if len(devices) > 1:
        assert "all-reduce" in train.collectives


SPLIT_CHECK = """
import json, jax
from trainer_utils import tiny_config
import one_conv_config
from at_jax.planning.abstract_job import abstract_setup, step_arguments
from at_jax.planning.compiled import compile_job
figures = {}
for mode in ("vmap", "auto"):
    for devices in (1, 4):
        config = tiny_config(model="one-conv", batch_size=4 * devices, steps_per_call=1, parallel_runs=2,
                             parallel_mode=mode)
        setup, job = abstract_setup(config, jax.devices()[:devices])
        train, _ = compile_job(setup, step_arguments(setup, job))
        figures[f"{mode}/{devices}"] = [train.flops, sorted(train.collectives)]
print(json.dumps(figures))
"""


def test_a_multi_run_job_on_several_devices_splits_its_batch():
    """2 runs of one-conv, 4 images per device, compiled for 1 and for 4 CPU devices: "auto" unrolls the runs on
    several devices and each device computes its quarter of the batch (the 1-device FLOPs); "vmap" there
    all-gathers the grouped convolution's operands and each device computes the whole batch (XLA's SPMD
    partitioner; the reason for the rule, multi_run.resolve_mode; should this change, revisit the rule)."""
    assert multi_run.resolve_mode("auto", 3, "tpu", devices=4) == "unroll"
    result = subprocess.run([sys.executable, "-c", SPLIT_CHECK], capture_output=True, text=True, timeout=300,
                            cwd=os.path.join(REPO, "tests"), env={
                                **os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["auto/4"][0] == pytest.approx(figures["auto/1"][0], rel=0.05)   # per device, same batch
    assert "all-gather" not in figures["auto/4"][1]
    assert figures["vmap/4"][0] > 3 * figures["vmap/1"][0] and "all-gather" in figures["vmap/4"][1]
    assert "parallel_mode='vmap' on 4 devices" in result.stderr


def test_dataset_shapes_without_files():
    """Published sizes for the sets read from files, the loader's size for the generated ones, counts given
    for an image folder, and one line when nothing says how large a set is."""
    imagenet = dataset_shape({"name": "imagenet", "image_size": 160, "pipeline": "auto"}, ImageViews(160, 224))
    assert imagenet == DatasetShape("imagenet", 1_281_167, 50_000, 1_000, (224, 224, 3), pad=28, flip=True,
                                    pipeline="stream")
    cifar = dataset_shape({"name": "cifar100"}, ImageViews(0, 0))
    assert (cifar.num_train, cifar.num_classes, cifar.image_shape, cifar.pad, cifar.pipeline) == (
        50_000, 100, (32, 32, 3), 4, "device")
    digits = dataset_shape({"name": "digits", "seed": 0}, ImageViews(0, 0))
    assert digits.num_classes == 10 and digits.pipeline == "device" and digits.num_train > 0
    folder = {"name": "image_folder", "data_dir": "/nowhere", "image_size": 64}
    with pytest.raises(DatasetError, match="--num-train"):
        dataset_shape(folder, ImageViews(64, 0))
    shape = dataset_shape(folder, ImageViews(64, 0), {"num_train": 900, "num_eval": 100, "num_classes": 67})
    assert (shape.num_train, shape.num_classes, shape.image_shape) == (900, 67, (64, 64, 3))


def test_collectives_and_out_of_memory_are_read_from_xla_text():
    hlo = ("  %all-reduce.3 = f32[3,3,16,16]{3,2,1,0} all-reduce(f32[3,3,16,16]{3,2,1,0} %x), to_apply=%add\n"
           "  %ars = (f32[10]{0}, bf16[4,4]{1,0}) all-reduce-start(f32[10]{0} %a, bf16[4,4]{1,0} %b)\n"
           "  %ard = (f32[10]{0}, bf16[4,4]{1,0}) all-reduce-done(%ars)\n"
           "  %ag = s32[8]{0} all-gather(s32[2]{0} %c), dimensions={0}\n")
    assert collectives_of(hlo) == {"all-reduce": {"count": 2, "bytes": 3 * 3 * 16 * 16 * 4 + 40 + 32},
                                   "all-gather": {"count": 1, "bytes": 32}}
    assert array_bytes("(pred[3]{0}, u8[2,2]{1,0})") == 7
    error = RuntimeError("RESOURCE_EXHAUSTED: XLA:TPU compile permanent error. Ran out of memory in memory space "
                         "hbm. Used 18.52G of 15.75G hbm. Exceeded hbm capacity by 2.77G.")
    refusal = out_of_memory(error)
    assert refusal.needed == int(18.52 * 1024 ** 3) and refusal.capacity == int(15.75 * 1024 ** 3)
    other_form = out_of_memory(RuntimeError("RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total memory required "
                                            "for HLO temporaries (309.39G) exceeds available HBM (15.75G)."))
    assert (other_form.needed, other_form.capacity) == (int(309.39 * 1024 ** 3), int(15.75 * 1024 ** 3))
    assert out_of_memory(RuntimeError("INVALID_ARGUMENT: something else")) is None


@pytest.mark.parametrize("fixed, per_image, quadratic, capacity, start", [
    (1000, 37, 50, 100_000, 128), (1000, 37, 50, 100_000, 8), (50_000, 37, 50, 1_000, 64),
    (1000, 37, 0, 10 ** 9, 128), (100, 10, 0, 2_000, 64), (1000, 37, 50, 100_000, 4096)])
def test_max_batch_search_agrees_with_trying_every_batch(fixed, per_image, quadratic, capacity, start):
    needed = lambda batch: fixed + per_image * batch + (batch * batch // quadratic if quadratic else 0)
    calls = []
    search = max_batch.find_max_batch(lambda batch: calls.append(batch) or needed(batch), capacity, start=start,
                                      granularity=8, upper=1 << 16)
    best = max([batch for batch in range(8, (1 << 16) + 1, 8) if needed(batch) <= capacity], default=0)
    assert search.largest_fitting == best
    assert len(calls) <= 8


def test_the_batch_search_compiles_each_probe_once_and_says_so(monkeypatch, caplog):
    """search_max_batch: the config's own report is the first probe (not compiled again), a refused compile
    counts as too large, each compile is one progress line, and the answer is a multiple of the granularity."""
    from at_jax.planning import plan
    from at_jax.planning.compiled import OutOfMemory
    from at_jax.planning.report import largest_batch_line
    from at_jax.planning.topology import Topology

    capacity = 1 << 20
    topology = Topology("v5e:2x2", 1, tuple(range(4)), 4, capacity)
    need = lambda per_device: 50_000 + 1000 * per_device
    compiled = []

    def fake_compile(config, described, counts):
        per_device = int(config.batch_size) // 4
        compiled.append(per_device)
        if need(per_device) > capacity:
            raise OutOfMemory("too large", need(per_device), capacity)
        return type("FakeReport", (), {"needed": need(per_device)})()

    monkeypatch.setattr(plan, "compile_run", fake_compile)
    config = tiny_config(batch_size=64, **{"dataset.num_train": 100_000})
    own = type("Own", (), {"needed": need(16), "run": type("Run", (), {"global_batch": 64})()})()
    with caplog.at_level("INFO"):
        found = plan.search_max_batch(config, topology, own, None, granularity=8)
    best = (capacity - 50_000) // 1000 // 8 * 8
    assert (found["per_chip"], found["global"]) == (best, 4 * best) and 16 not in compiled
    assert sorted(compiled) == sorted(set(compiled)) and set(found["probes"]) == {16, *compiled}
    lines = [record.getMessage() for record in caplog.records if "per device:" in record.getMessage()]
    assert len(lines) == len(compiled) and any("too large" in line for line in lines)
    assert all(line.endswith(" s)") and "GiB of 0.00" in line for line in lines)
    assert found["compiler_failures"] == {} and set(found["compile_seconds"]) == set(compiled)
    assert found["untried"] == [] and "lower bound" not in largest_batch_line(found)
    monkeypatch.setattr(plan, "find_max_batch", functools.partial(max_batch.find_max_batch, max_probes=3))
    stopped = plan.search_max_batch(config, topology, own, None, granularity=8)    # 16, 32, then one more
    first, last = stopped["untried"]               # no batch refused yet: up to the training set per device
    assert (first, last) == (stopped["per_chip"] + 8, 100_000 // 4) and len(stopped["probes"]) == 3
    assert f"with {first} to {last} per device untried (the answer is a lower bound)" in largest_batch_line(stopped)


def test_a_refusal_below_the_chips_nominal_memory_is_logged_with_the_compilers_figures(monkeypatch, caplog):
    """libtpu refuses ImageNet at 5,024 per v6e chip: "HLO temporaries (31.31G) exceeds available HBM (31.24G)",
    below the chip's 32 GiB. The search counts it as too large and its line shows the compiler's two figures."""
    from at_jax.planning import plan
    from at_jax.planning.compiled import OutOfMemory
    from at_jax.planning.topology import Topology

    gib = 1 << 30
    def fake_compile(config, described, counts):
        if int(config.batch_size) // 8 > 4992:
            raise OutOfMemory("refused", int(31.31 * gib), int(31.24 * gib))
        return type("FakeReport", (), {"needed": int(31.13 * gib)})()

    monkeypatch.setattr(plan, "compile_run", fake_compile)
    topology = Topology("v6e:2x4", 1, tuple(range(8)), 8, 32 * gib)
    with caplog.at_level("INFO"):
        found = plan.search_max_batch(tiny_config(batch_size=8 * 4992, **{"dataset.num_train": 1 << 20}), topology,
                                      None, granularity=32)
    lines = [record.getMessage() for record in caplog.records if "per device:" in record.getMessage()]
    assert found["per_chip"] == 4992 and found["probes"][5024] > 32 * gib
    assert "batch 5024 per device: 31.31 GiB of 32.00 (too large: the compiler allows 31.24; compiled in " in \
        "\n".join(lines)
    assert lines[0].startswith("batch 4992 per device: 31.13 GiB of 32.00 (fits; compiled in ")


def test_a_compiler_failure_is_one_line_and_bounds_the_batch_search(monkeypatch):
    """The compiler's own failure (an INTERNAL error raised by ``compile()``, not by the program's size) is
    one line naming the compiler and the stage; in the batch search such a batch counts as one that does not
    compile, and the answer and the report line say so."""
    from at_jax.planning import plan
    from at_jax.planning.compiled import CompilerFailure, compile_step
    from at_jax.planning.report import largest_batch_line
    from at_jax.planning.topology import Topology

    class JaxRuntimeError(RuntimeError):
        pass

    class Unfinished:
        def lower(self, *arguments):
            return self

        def compile(self):
            raise JaxRuntimeError("INTERNAL: RET_CHECK failure (hlo_instruction.cc:390) async-update ...\nmore")

    with pytest.raises(CompilerFailure) as failure:
        compile_step(Unfinished(), (), "the train call for v6e:2x4 (global batch 49984)")
    assert "failed compiling the train call for v6e:2x4 (global batch 49984): INTERNAL: RET_CHECK failure " \
        "(hlo_instruction.cc:390) async-update ...; not a fault of the config" in str(failure.value)
    assert "\n" not in str(failure.value) and str(failure.value).startswith("XLA's TPU compiler (")

    capacity = 1 << 30
    def fake_compile(config, described, counts):
        per_device = int(config.batch_size) // 8
        if per_device >= 1000:
            raise CompilerFailure(f"XLA's TPU compiler failed compiling batch {per_device}")
        return type("FakeReport", (), {"needed": 1000 * per_device})()

    monkeypatch.setattr(plan, "compile_run", fake_compile)
    topology = Topology("v6e:2x4", 1, tuple(range(8)), 8, capacity)
    found = plan.search_max_batch(tiny_config(batch_size=128, **{"dataset.num_train": 80_000}), topology, None)
    smallest_failure = min(found["compiler_failures"])     # bisected: no figure to predict from
    assert (found["per_chip"], smallest_failure, found["untried"]) == (992, 1000, [])
    assert not set(found["probes"]) & set(found["compiler_failures"])
    line = largest_batch_line(found)
    compiles = len(found["probes"]) + len(found["compiler_failures"])
    assert line.startswith(f"largest batch that fits: 992 per device (global 7936; {compiles} compiles)")
    assert ("untried (the answer is a lower bound)" in line) == bool(found["untried"])
    assert f"the compiler failed on {len(found['compiler_failures'])} of them, from {smallest_failure} per " \
        "device on" in line


def test_a_program_jax_cannot_read_back_still_reports_its_memory(caplog):
    """libtpu 0.0.52 beside jax 0.10.2 compiles ImageNet and CRA-R50 at large batches for v6e, but reading the
    optimised HLO back (``as_text``) fails with a RET_CHECK (BENCHMARKS.md): the memory, FLOPs and bytes stand,
    the collectives are unknown (None, "unknown" in the text, a warning naming the stage); other errors pass."""
    from at_jax.planning.compiled import compile_step
    from at_jax.planning.report import _collectives

    class JaxRuntimeError(RuntimeError):
        pass

    class Compiled:
        def __init__(self, error):
            self.error = error

        def lower(self, *arguments):
            return self

        def compile(self):
            return self

        def memory_analysis(self):
            sizes = dict(argument_size_in_bytes=100, output_size_in_bytes=20, alias_size_in_bytes=20,
                         temp_size_in_bytes=7, generated_code_size_in_bytes=1)
            return type("Analysis", (), sizes)()

        def cost_analysis(self):
            return {"flops": 5.0, "bytes accessed": 9.0}

        def as_text(self):
            raise self.error

    unreadable = JaxRuntimeError("INTERNAL: RET_CHECK failure (hlo_instruction.cc:390) async-update instruction "
                                 "should have 1 operands but sees 3\nmore")
    with caplog.at_level("WARNING"):
        step = compile_step(Compiled(unreadable), (), "the train call for v6e:2x4 (global batch 43008)")
    assert (step.memory.total, step.flops, step.bytes_accessed, step.collectives) == (108, 5.0, 9.0, None)
    assert _collectives(step).startswith("unknown") and step.as_dict()["collectives"] is None
    warning, = [record.getMessage() for record in caplog.records]
    assert warning.startswith("the train call for v6e:2x4 (global batch 43008) compiled, but this jax cannot read "
                              "back its optimised HLO (INTERNAL: RET_CHECK failure") and "more" not in warning
    with pytest.raises(ValueError):
        compile_step(Compiled(ValueError("a fault of ours")), ())


def test_without_libtpu_one_line_says_what_to_install(tmp_path):
    """Where libtpu is not installed the command ends in one line naming the extra; a bad topology name too."""
    if HAS_LIBTPU:
        pytest.skip("libtpu is installed here")
    result = compile_for("--topology=v5e:2x2", "--config=configs/tiny.py")
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        'at_jax: error: compiling for a TPU topology needs XLA\'s TPU compiler: pip install -e ".[tpu-compile]" '
        '(jax[tpu] of the installed jax version: libtpu)']
    result = compile_for("--topology=v5e-4x4", "--config=configs/tiny.py")
    assert result.returncode == 2 and "--topology must look like v5e:2x2" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def child_command(code: str) -> list[str]:
    return [sys.executable, "-c", "import os, signal, sys\nfrom at_jax.planning.crash_guard import mark\n" + code]


def test_a_compiler_crash_ends_in_one_line_naming_the_stage(capfd):
    """A child that dies by a signal while compiling (libtpu segfaults on v6e) gives one line naming the signal,
    the stage it marked and the log that keeps its stderr; a child that ends normally passes its exit code,
    stdout and stderr through."""
    code, line = crash_guard.run_in_child(child_command(
        "mark('the train call for v6e:2x2 (global batch 8)')\nprint('libtpu dump', file=sys.stderr, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGSEGV)"))
    assert code == -signal.SIGSEGV
    assert line.startswith("XLA's TPU compiler (libtpu") and "crashed (SIGSEGV) compiling the train call for " \
        "v6e:2x2 (global batch 8)" in line, line
    log_path = line.rsplit(" ", 1)[1]
    assert open(log_path, encoding="utf-8").read() == "libtpu dump\n"
    os.unlink(log_path)
    assert "libtpu dump" not in capfd.readouterr().err
    code, line = crash_guard.run_in_child(child_command("print('report')\nprint('warned', file=sys.stderr)\n"
                                                        "sys.exit(3)"))
    assert (code, line) == (3, "")
    captured = capfd.readouterr()
    assert (captured.out, captured.err) == ("report\n", "warned\n")
    progress = "I1207 14:10:01.123456 4758 plan.py:64] batch 16 per device: 0.19 GiB of 16.00 (fits)"
    code, line = crash_guard.run_in_child(child_command(
        f"print('libtpu noise', file=sys.stderr)\nprint({progress!r}, file=sys.stderr, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGSEGV)"))
    err = capfd.readouterr().err          # at_jax's own record passed on as it came; the rest kept in the log
    assert code == -signal.SIGSEGV and err == progress + "\n"
    log_path = line.rsplit(" ", 1)[1]
    assert open(log_path, encoding="utf-8").read() == f"libtpu noise\n{progress}\n"
    os.unlink(log_path)
    code, line = crash_guard.run_in_child(child_command("os.kill(os.getpid(), signal.SIGKILL)"))
    assert code == -signal.SIGKILL and line.startswith("the compilation was stopped by SIGKILL while compiling "
                                                       "the run (log: ")


@tpu_compile
def test_libtpus_v6e_crash_is_one_line():
    """libtpu 0.0.42.1 (jax[tpu]==0.10.2's) segfaults compiling WRN-10-1's train step for v6e (BENCHMARKS.md):
    the command says so in one line and exit code 1; with a libtpu that compiles it (0.0.52), it reports."""
    result = compile_for("--topology=v6e:2x2", "--config=configs/tiny.py", "--json")
    if result.returncode == 0:
        assert json.loads(result.stdout)["fits"]
        return
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("at_jax: error: XLA's TPU compiler (libtpu ") and "crashed (SIG" in lines[0]
    assert "compiling the train call for v6e:2x2 (global batch 16)" in lines[0]
    log_path = lines[0].rsplit(" ", 1)[1]
    assert "Segmentation fault" in open(log_path, encoding="utf-8").read() or "SIGSEGV" not in lines[0]
    os.unlink(log_path)


@tpu_compile
def test_compiles_for_a_tpu_topology_and_reports_per_chip():
    """one-conv for v5e:2x2: 10 steps per call (the accelerator default); figures per device, an all-reduce
    over the 4 chips; FLOPs per image within the hand count (the forward and weight-gradient convolutions).
    --find-max-batch: bounded by the 64 training images (16 per chip), one more compile, its line on stderr."""
    result = compile_for("--topology=v5e:2x2", f"--config={ONE_CONV_CONFIG}", "--config.batch_size=32", "--json",
                         "--find-max-batch")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["max_batch"]["per_chip"] == 16 and set(report["max_batch"]["probes"]) == {"8", "16"}
    assert re.search(r"plan\.py:\d+\] batch 16 per device: 0\.00 GiB of 16\.00 \(fits; compiled in \d+ s\)",
                     result.stderr), result.stderr
    assert (report["chips"], report["devices"], report["batch_per_device"], report["steps_per_call"]) == (4, 4, 8, 10)
    assert report["fits"] and report["memory_per_device"] == 16 * 1024 ** 3
    assert CONV_FLOPS_PER_IMAGE * 2 <= report["flops_per_image"] <= CONV_FLOPS_PER_IMAGE * 2.6
    assert report["train"]["collectives"]["all-reduce"]["count"] >= 1
    assert report["eval"]["memory"]["arguments"] >= PARAMETER_BYTES


@tpu_compile
def test_a_run_that_does_not_fit_is_refused_in_one_line():
    result = compile_for("--topology=v5e:2x2", "--config=configs/tiny.py", "--config.model=wrn-40-4",
                         "--config.dataset.image_size=224", "--config.batch_size=8192",
                         "--config.dataset.num_train=8192")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("at_jax: error: the run does not fit"), lines
    assert "HBM" in lines[0] and "--find-max-batch" in lines[0]


def test_training_rows_give_the_batch_the_images_give():
    """The device-resident training set is stored one row per image (training/batches.py, the TPU layout
    finding of BENCHMARKS.md); the step's gathered, augmented batch is the one (N, H, W, C) storage gives."""
    from at_jax.training.batches import device_data
    from at_jax.training.step import StepConfig, train_batch
    from at_jax.data import load_dataset

    dataset = load_dataset("synthetic", num_train=12, num_test=4, image_size=8)
    rows = device_data(dataset, 4, jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("data",)))
    assert rows["train_images"].shape == (12, 8 * 8 * 3)
    images = {"train_images": jnp.asarray(dataset.train_images), "train_labels": rows["train_labels"]}
    config = StepConfig(total_steps=1, pad=2, flip=True, mean=(0.5,) * 3, std=(0.25,) * 3, image_shape=(8, 8, 3))
    indices = jnp.asarray([3, 1, 4, 1, 5, 9], jnp.int32)
    from_rows = train_batch(jax.random.PRNGKey(7), rows, indices, config)
    from_images = train_batch(jax.random.PRNGKey(7), images, indices, config)
    np.testing.assert_array_equal(np.asarray(from_rows[0]), np.asarray(from_images[0]))
    np.testing.assert_array_equal(np.asarray(from_rows[1]), np.asarray(from_images[1]))
