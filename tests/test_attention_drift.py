"""Attention maps while training (``metrics.attention_every``): snapshots at the right steps, the per-pair AT
loss recomputed independently, a teacher at another input size, TensorBoard images, the runs of a job, a
restart from step 0, and ``python -m at_jax.visualize drift``."""
import glob
import os
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import at_jax
from at_jax import visualize
from at_jax.data import dataset_from_config, normalize
from at_jax.data.views import run_views
from at_jax.figures.drift import maps_panel, read_npz, spread_rows
from at_jax.run_files import read_metrics
from at_jax.spatial import resize_antialiased
from at_jax.training import train_and_evaluate
from at_jax.training.attention_probe import AttentionProbe, make_probe
from at_jax.training.metrics import MetricWriter
from at_jax.training.multi_run import stack
from trainer_utils import tiny_config

PAIRS = 3   # wrn-10-1 student and teacher: three groups, paired in order


def student_config(teacher_dir, **overrides):
    return tiny_config(**{"loss.at_beta": 1e3, "teacher.workdir": teacher_dir, "num_train_steps": 4,
                          "eval_every_steps": 0, "checkpoint_every_steps": 4, "metrics.attention_every": 1,
                          **overrides})


def snapshot_steps(run_dir) -> list[int]:
    return sorted(int(name[5:13]) for name in os.listdir(os.path.join(run_dir, "attention"))
                  if name.startswith("step_"))


def snapshot(run_dir, step) -> dict:
    return read_npz(os.path.join(run_dir, "attention", f"step_{step:08d}.npz"))


def attention_records(run_dir) -> dict[int, list[float]]:
    """step -> the attention/pair_<i> scalars of metrics.jsonl (each step once)."""
    records = [r for r in read_metrics(os.path.join(run_dir, "metrics.jsonl")) if "attention/pair_0" in r]
    assert len({r["step"] for r in records}) == len(records), "an attention line is duplicated"
    return {r["step"]: [r[f"attention/pair_{k}"] for k in range(PAIRS)] for r in records}


def recomputed_losses(run_dir, teacher_dir, config) -> list[float]:
    """at_loss of each pair on the saved probe images, from the finished run's and the teacher's weights."""
    dataset = dataset_from_config(config.dataset, run_views(config))
    images = read_npz(os.path.join(run_dir, "attention", "probe_images.npz"))["images"]
    np.testing.assert_array_equal(images, dataset.test_images[:8])
    x = normalize(jnp.asarray(images), dataset.mean, dataset.std)
    student_size, teacher_size = run_views(config).sizes(images.shape[1])
    (student, student_vars), (teacher, teacher_vars) = at_jax.load_model(run_dir), at_jax.load_model(teacher_dir)
    s = jax.jit(student.apply, static_argnames="train")(student_vars, resize_antialiased(x, student_size),
                                                        train=False)[1]
    t = jax.jit(teacher.apply, static_argnames="train")(teacher_vars, resize_antialiased(x, teacher_size),
                                                        train=False)[1]
    return [float(at_jax.at_loss(a, b)) for a, b in zip(s, t)]


def tensorboard_image_steps(run_dir, tag) -> list[int]:
    """Steps of the image summaries ``tag`` in ``run_dir/tensorboard`` (event files read record by record)."""
    from tensorboardX.proto.event_pb2 import Event  # pylint: disable=import-outside-toplevel
    steps = []
    for path in sorted(glob.glob(os.path.join(run_dir, "tensorboard", "events.out.tfevents.*"))):
        data, pos = open(path, "rb").read(), 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            event = Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 12 + length + 4
            steps += [event.step for value in event.summary.value
                      if value.tag == tag and value.HasField("image")]
    return sorted(steps)


@pytest.fixture(scope="module")
def student_run(teacher_dir, tmp_path_factory):
    """A student at 16 px (dataset.image_size) whose teacher sees the same images at 24 px (teacher.image_size)."""
    workdir = str(tmp_path_factory.mktemp("drift") / "student")
    config = student_config(teacher_dir, **{"teacher.image_size": 24, "metrics.writers": "jsonl,tensorboard"})
    train_and_evaluate(config, workdir)
    return workdir, config


def test_snapshots_scalars_and_images_at_their_steps(student_run):
    workdir, _ = student_run
    assert snapshot_steps(workdir) == [0, 2, 4]   # step 0, then every log_every_steps (2) * 1
    logged = attention_records(workdir)
    assert sorted(logged) == [0, 2, 4]
    for step in (0, 2, 4):
        saved = snapshot(workdir, step)
        assert int(saved["step"]) == step and saved["pairs"].tolist() == [[0, 0], [1, 1], [2, 2]]
        for k, (student_side, teacher_side) in enumerate(((16, 24), (8, 12), (4, 6))):
            assert saved[f"student_{k}"].shape == (8, student_side, student_side)
            assert saved[f"teacher_{k}"].shape == (8, teacher_side, teacher_side)
            assert saved[f"student_{k}"].dtype == saved[f"teacher_{k}"].dtype == np.float32
        np.testing.assert_allclose(logged[step], saved["loss"], rtol=1e-6)
    assert not np.allclose(snapshot(workdir, 0)["student_2"], snapshot(workdir, 4)["student_2"])
    np.testing.assert_array_equal(snapshot(workdir, 0)["teacher_2"], snapshot(workdir, 4)["teacher_2"])
    assert tensorboard_image_steps(workdir, "attention/maps") == [0, 2, 4]


def test_logged_loss_equals_at_loss_recomputed_from_the_weights(student_run, teacher_dir):
    """The last snapshot: at_loss of the finished student (16 px) and the teacher (24 px) on the probe images,
    computed here from the checkpoints."""
    workdir, config = student_run
    np.testing.assert_allclose(snapshot(workdir, 4)["loss"], recomputed_losses(workdir, teacher_dir, config),
                               rtol=1e-4, atol=1e-8)


class RecordingWriter(MetricWriter):
    """A metric writer that also records its images."""

    def __init__(self, workdir, resume_step):
        super().__init__(workdir, resume_step=resume_step)
        self.images = []

    @property
    def takes_images(self):
        return True

    def write_image(self, name, image, step):
        self.images.append((name, np.asarray(image).shape, step))


def test_restarted_run_writes_step_zero_once(tmp_path):
    """A run restarted from scratch keeps its step-0 line (MetricWriter keeps lines up to the resume step) and
    does not write it again; the snapshot file is rewritten."""
    probe = AttentionProbe.__new__(AttentionProbe)
    probe.images, probe.pairs, probe.labels = np.zeros((2, 8, 8, 3), np.uint8), ((0, 0),), ["features 0 | 0"]
    maps = [np.full((2, 4, 4), 0.25, np.float32)]
    for attempt in range(2):
        writer = RecordingWriter(str(tmp_path), resume_step=0)
        probe.write_run(0, str(tmp_path), writer, maps, maps, np.asarray([0.5], np.float32))
        assert len(writer.images) == (1 if attempt == 0 else 0)
    probe.write_run(2, str(tmp_path), RecordingWriter(str(tmp_path), resume_step=0), maps, maps, np.asarray([0.25]))
    assert [(r["step"], r["attention/pair_0"]) for r in read_metrics(tmp_path / "metrics.jsonl")] == [(0, 0.5),
                                                                                                    (2, 0.25)]
    assert sorted(os.listdir(tmp_path / "attention")) == ["probe_images.npz", "step_00000000.npz",
                                                         "step_00000002.npz"]


def test_job_of_two_runs_writes_each_runs_maps(student_run, teacher_dir, tmp_path):
    """The compiled probe over two stacked runs (vmap, as accelerators run a job): each active run's own maps
    (attention_map on each feature's grid) and losses (at_loss; for same-size maps in code form, the mean
    squared map difference) in its own directory; a stopped run gets nothing. The runs: the trained student
    and a copy of the teacher (wrn-10-1 both), whose maps are the teacher's."""
    (model, student_vars), (_, teacher_vars) = at_jax.load_model(student_run[0]), at_jax.load_model(teacher_dir)
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 16, 16, 3))
    variables = [student_vars, teacher_vars, teacher_vars]
    stacked = stack(variables[:2])
    probe = AttentionProbe.__new__(AttentionProbe)
    probe.images, probe.views, probe.teacher_variables = np.zeros((3, 16, 16, 3), np.uint8), (x, x), variables[2]
    probe.pairs, probe.labels = ((1, 2), (2, 2)), ["features 1 | 2", "features 2 | 2"]
    probe.probe = make_probe(model, model, probe.pairs, {"p": 2.0, "reduce": "mean", "normalize": "l2",
                                                         "resize": "pool", "form": "code"}, runs=2, mode="vmap")
    run_dirs = [str(tmp_path / name) for name in ("a", "b")]
    writers = [RecordingWriter(run_dir, resume_step=0) for run_dir in run_dirs]
    state = {"params": {"model": stacked["params"]}, "batch_stats": stacked["batch_stats"]}
    probe.record(2, state, [0, 1], run_dirs, writers, write=True)
    probe.record(4, state, [1], run_dirs, writers, write=True)
    apply = jax.jit(model.apply, static_argnames="train")
    teacher = apply(variables[2], x, train=False)[1]
    for run, run_dir in enumerate(run_dirs):
        assert snapshot_steps(run_dir) == ([2] if run == 0 else [2, 4])
        saved, student = snapshot(run_dir, 2), apply(variables[run], x, train=False)[1]
        for k, (i, j) in enumerate(probe.pairs):
            np.testing.assert_allclose(saved[f"student_{k}"], at_jax.attention_map(student[i]).reshape(
                student[i].shape[:3]), rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(saved["loss"][k], at_jax.at_loss(student[i], teacher[j]), rtol=1e-5,
                                       atol=1e-9)
        np.testing.assert_allclose(saved["loss"][1], np.mean((saved["student_1"] - saved["teacher_1"]) ** 2),
                                   rtol=1e-5, atol=1e-9)
        assert saved["student_0"].shape == (3, 8, 8) and saved["teacher_0"].shape == (3, 4, 4)
        assert [r["step"] for r in read_metrics(os.path.join(run_dir, "metrics.jsonl"))] == [2, 4][:1 + run]
        assert [image[2] for image in writers[run].images] == [2, 4][:1 + run]
    assert not np.allclose(snapshot(run_dirs[0], 2)["student_1"], snapshot(run_dirs[1], 2)["student_1"])
    np.testing.assert_allclose(snapshot(run_dirs[1], 2)["student_1"], snapshot(run_dirs[1], 2)["teacher_0"],
                               rtol=1e-5, atol=1e-7)   # run b is the teacher: its group-2 map is the teacher's
    assert snapshot(run_dirs[1], 2)["loss"][1] == pytest.approx(0.0, abs=1e-9)


def test_no_snapshots_without_the_key(teacher_dir):
    assert not os.path.exists(os.path.join(teacher_dir, "attention"))   # attention_every = 0 (the default)


def test_drift_command(student_run, tmp_path, capsys):
    workdir, _ = student_run
    out = str(tmp_path / "drift.png")
    visualize.main(["drift", f"--workdir={workdir}", f"--out={out}", "--max-rows=2", "--dpi=50", "--image=7"])
    assert Image.open(out).size == ((1 + 2 * PAIRS) * 80, 2 * 80)   # rows: steps 0 and 4; 1.6-inch cells
    assert "wrote" in capsys.readouterr().out


def test_drift_of_a_run_without_snapshots(teacher_dir, tmp_path, capsys):
    job = tmp_path / "job"
    (job / "seed_0" / "attention").mkdir(parents=True)
    for workdir, hint in ((teacher_dir, ""), (job, f"pass one run's directory, e.g. {job}/seed_0")):
        with pytest.raises(SystemExit) as exited:
            visualize.main(["drift", f"--workdir={workdir}", f"--out={tmp_path / 'x.png'}"])
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert exited.value.code == 2 and len(lines) == 1
        assert "no attention snapshots" in lines[0] and "--config.metrics.attention_every=K" in lines[0]
        assert hint in lines[0]
    assert not os.path.exists(tmp_path / "x.png")


def test_spread_rows_keeps_first_and_last():
    assert spread_rows(10, 4) == [0, 3, 6, 9]
    assert spread_rows(3, 8) == [0, 1, 2]
    assert spread_rows(5, 2) == [0, 4]
    assert spread_rows(5, 1) == [4]


def test_maps_panel_size():
    images = np.zeros((8, 16, 16, 1), np.uint8)
    maps = [np.ones((8, 4, 4), np.float32)] * 2
    panel = maps_panel(images, maps, maps)   # 4 rows of 32-px cells; image, then student | teacher of 2 pairs
    assert panel.shape == (4 * 32 + 3 * 2, 5 * 32 + 2 * 2 + 2 * 6, 3) and panel.dtype == np.uint8
