"""config.metrics.writers: writers chosen by name, refused names, TensorBoard text and images, wandb offline
through the trainer (read back from the files each writes; never the network)."""
import glob
import io
import json
import os
import struct
import sys

import numpy as np
import pytest
from PIL import Image

from at_jax.errors import ConfigError
from at_jax.experiments.plan import config_differences
from at_jax.run_files import read_metrics
from at_jax.training.metrics import MetricWriter
from at_jax.training.workdir import check_resume_compatible, save_config
from at_jax.training.writers import (WRITERS, TensorBoardWriter, image_array, wandb_run_id, wandb_run_name,
                                     writer_names)
from trainer_utils import tiny_config


def tensorboard_events(run_dir) -> list:
    """Every event of ``run_dir/tensorboard`` (TFRecord files: length, its crc, the Event, its crc)."""
    from tensorboardX.proto.event_pb2 import Event  # pylint: disable=import-outside-toplevel
    events = []
    for path in sorted(glob.glob(os.path.join(run_dir, "tensorboard", "events.out.tfevents.*"))):
        data, pos = open(path, "rb").read(), 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            events.append(Event.FromString(data[pos + 12:pos + 12 + length]))
            pos += 12 + length + 4
    return events


def tensorboard_texts(run_dir) -> list[tuple[str, int, str]]:
    """(tag, step, text) of the text summaries in ``run_dir/tensorboard``."""
    return [(value.tag, event.step, value.tensor.string_val[0].decode())
            for event in tensorboard_events(run_dir) for value in event.summary.value
            if value.tensor.string_val]


def unindent(markdown: str) -> dict:
    """The JSON object of :func:`at_jax.training.writers.as_markdown`'s code block."""
    return json.loads("\n".join(line[4:] for line in markdown.splitlines()))


def wandb_records(path) -> list:
    """The records of an offline wandb run file (``run-<id>.wandb``): a 7-byte header, then LevelDB-log
    chunks (crc32c, length, type: 1 full, 2 first, 3 middle, 4 last) in 32 KiB blocks. Call
    :func:`wandb_flushed` first."""
    from wandb.proto.wandb_internal_pb2 import Record  # pylint: disable=import-outside-toplevel
    data, pos, chunks, records = open(path, "rb").read(), 7, [], []
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a chunk header is padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunks.append(data[pos + 7:pos + 7 + length])
        pos += 7 + length
        if kind in (1, 4):
            records.append(Record.FromString(b"".join(chunks)))
            chunks = []
    return records


def wandb_flushed() -> None:
    """Stops wandb's service process, which writes the run files after ``run.finish()`` has returned."""
    import wandb  # pylint: disable=import-outside-toplevel
    wandb.teardown()


def wandb_items(items) -> dict:
    """A wandb history row's or summary update's items as {key: value}."""
    return {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in items}


def test_writer_names_always_include_jsonl_once():
    assert writer_names("tensorboard") == ("jsonl", "tensorboard")
    assert writer_names(" tensorboard , jsonl,tensorboard ") == ("jsonl", "tensorboard")
    assert writer_names("") == ("jsonl",)
    assert writer_names(["wandb"]) == ("jsonl", "wandb")


def test_unknown_writer_is_refused_in_one_line_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError) as error:
        MetricWriter(str(tmp_path / "run"), writers="jsonl,tensorbord")
    message = str(error.value)
    assert "'tensorbord'" in message and "\n" not in message
    assert all(name in message for name in WRITERS)
    assert not (tmp_path / "run").exists()


def test_wandb_asked_for_but_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # importlib finds no wandb
    with pytest.raises(ConfigError, match="pip install wandb"):
        writer_names("jsonl,wandb")
    assert writer_names("tensorboard") == ("jsonl", "tensorboard")


@pytest.mark.parametrize("writers, has_tensorboard", [("jsonl", False), ("tensorboard", True)])
def test_writers_chosen_by_name(tmp_path, writers, has_tensorboard):
    writer = MetricWriter(str(tmp_path), writers=writers)
    writer.write(3, {"train/total": 0.5})
    writer.write_summary({"accuracy": 0.25}, 3)
    writer.close()
    assert read_metrics(tmp_path / "metrics.jsonl") == [{"step": 3, "train/total": 0.5}]
    assert (tmp_path / "tensorboard").exists() == has_tensorboard


def test_disabled_writer_writes_nothing(tmp_path):
    writer = MetricWriter(str(tmp_path), writers="jsonl,tensorboard", enabled=False)
    writer.write(1, {"train/total": 1.0})
    writer.write_image("attention", np.zeros((4, 4)), 1)
    writer.close()
    assert os.listdir(tmp_path) == []


def test_tensorboard_config_scalars_summary_and_image(tmp_path):
    pixels = np.zeros((6, 5, 3), np.uint8)
    pixels[1, 2] = (255, 128, 0)
    writer = TensorBoardWriter(str(tmp_path), config={"model": "wrn-10-1", "loss": {"at_layers": (("a", "b"),)}})
    writer.write_scalars(2, {"train/total": 1.5, "epoch": 1, "flag": True, "name": "x"})
    writer.write_image("attention/maps", pixels, 2)
    writer.write_summary({"accuracy": 0.75, "step": 2}, 2)
    writer.close()
    texts = tensorboard_texts(tmp_path)
    assert [(tag, step) for tag, step, _ in texts] == [("config/text_summary", 0), ("summary/text_summary", 2)]
    assert unindent(texts[0][2]) == {"model": "wrn-10-1", "loss": {"at_layers": [["a", "b"]]}}
    assert unindent(texts[1][2]) == {"accuracy": 0.75, "step": 2}
    values = {value.tag: value for event in tensorboard_events(tmp_path) for value in event.summary.value}
    assert values["train/total"].simple_value == 1.5 and values["epoch"].simple_value == 1.0
    assert "flag" not in values and "name" not in values
    image = values["attention/maps"].image
    assert (image.height, image.width) == (6, 5)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(image.encoded_image_string)).convert("RGB")), pixels)


def test_tensorboard_resume_purges_later_events(tmp_path):
    writer = TensorBoardWriter(str(tmp_path))
    for step in (1, 2, 3, 4):
        writer.write_scalars(step, {"train/total": float(step)})
    writer.close()
    TensorBoardWriter(str(tmp_path), resume_step=2).close()
    purges = [event.step for event in tensorboard_events(tmp_path) if event.session_log.status == 1]
    assert purges == [3]  # TensorBoard drops the old file's steps >= 3 when it reads the new one


def test_image_array_from_arrays_and_png(tmp_path):
    gray = np.array([[0.0, 0.5], [1.0, 2.0]])
    assert np.array_equal(image_array(gray)[..., 0], [[0, 128], [255, 255]])
    assert image_array(gray).shape == (2, 2, 3)
    rgba = np.full((3, 2, 4), 7, np.uint8)
    assert image_array(rgba).shape == (3, 2, 3)
    pixels = np.arange(3 * 4 * 3, dtype=np.uint8).reshape(3, 4, 3)
    Image.fromarray(pixels).save(tmp_path / "figure.png")
    assert np.array_equal(image_array(str(tmp_path / "figure.png")), pixels)
    with pytest.raises(ValueError, match="shape"):
        image_array(np.zeros((2, 2, 2)))


def test_wandb_run_id_and_name(tmp_path):
    run_dir = str(tmp_path / "runs" / "seed_3")
    assert wandb_run_id(run_dir) == wandb_run_id(run_dir + "/") != wandb_run_id(str(tmp_path / "seed_3"))
    assert wandb_run_name(run_dir) == "seed_3"
    assert wandb_run_name(run_dir, "at/seed_3") == "at/seed_3"   # an experiment's run
    assert wandb_run_name(run_dir, "at") == "at/seed_3"          # a run of a parallel job of method "at"


def test_old_runs_config_with_tensorboard_key_still_resumes_and_matches(tmp_path):
    old = tiny_config().to_dict()
    del old["metrics"]
    old["tensorboard"] = False
    save_config(str(tmp_path), old, num_classes=10)
    assert check_resume_compatible(str(tmp_path), tiny_config().to_dict())
    assert config_differences(old, tiny_config(**{"metrics.writers": "jsonl,wandb"}).to_dict()) == []


@pytest.fixture
def offline_wandb(monkeypatch, tmp_path):
    """wandb offline, silent, its settings and cache under tmp_path: nothing reaches the network."""
    pytest.importorskip("wandb")
    for name, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(tmp_path / "wandb_dir"),
                        "WANDB_CONFIG_DIR": str(tmp_path / "wandb_config"),
                        "WANDB_CACHE_DIR": str(tmp_path / "wandb_cache"),
                        "WANDB_DATA_DIR": str(tmp_path / "wandb_data")}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


def test_wandb_writers_of_two_runs_at_once_and_an_image(offline_wandb, tmp_path):
    """A job of several runs has one wandb run each, open together (not the first one returned again)."""
    from at_jax.training.writers import WandbWriter  # pylint: disable=import-outside-toplevel
    run_dirs = [str(tmp_path / "job" / name) for name in ("seed_0", "seed_1")]
    writers = [WandbWriter(run_dir, {"seed": seed}) for seed, run_dir in enumerate(run_dirs)]
    for seed, writer in enumerate(writers):
        writer.write_scalars(1, {"train/total": float(seed)})
    writers[1].write_image("attention", np.ones((4, 3)), 1)
    for writer in writers:
        writer.close()
    wandb_flushed()
    for seed, run_dir in enumerate(run_dirs):
        (path,) = glob.glob(os.path.join(run_dir, "wandb", "offline-run-*", f"run-{wandb_run_id(run_dir)}.wandb"))
        records = wandb_records(path)
        (run,) = [record.run for record in records if record.HasField("run")]
        assert run.display_name == f"seed_{seed}" and wandb_items(run.config.update)["seed"] == seed
        rows = [wandb_items(record.history.item) for record in records if record.HasField("history")]
        assert [row["train/total"] for row in rows] == [seed]
        assert ("attention/_type" in rows[0]) == (seed == 1)
    assert glob.glob(os.path.join(run_dirs[1], "wandb", "offline-run-*", "files", "media", "images", "*.png"))


def test_trainer_writes_wandb_offline_and_tensorboard_text(offline_wandb, tmp_path):
    """A run of 2 steps, then resumed to 4: one wandb id for both parts, scalars at each log step, the
    config at init and the summary at the end; TensorBoard has the config at each start and the summary."""
    from at_jax.training import train_and_evaluate  # pylint: disable=import-outside-toplevel
    from experiment_utils import register_tiny_cnn  # pylint: disable=import-outside-toplevel
    register_tiny_cnn()
    workdir = str(tmp_path / "run")
    overrides = {"model": "tiny-cnn-4", "log_every_steps": 2, "eval_every_steps": 2, "checkpoint_every_steps": 2,
                 "optimizer.schedule": "constant",  # the same compiled step for 2 and 4 steps
                 "metrics.writers": "jsonl,tensorboard,wandb", "metrics.wandb_project": "at_jax_test"}
    train_and_evaluate(tiny_config(num_train_steps=2, **overrides), workdir)
    summary = train_and_evaluate(tiny_config(num_train_steps=4, **overrides), workdir)
    wandb_flushed()

    parts = sorted(glob.glob(os.path.join(workdir, "wandb", "offline-run-*", "run-*.wandb")))  # by start time
    assert parts and {os.path.basename(path) for path in parts} == {f"run-{wandb_run_id(workdir)}.wandb"}
    records = [record for path in parts for record in wandb_records(path)]
    runs = [record.run for record in records if record.HasField("run")]
    assert len(runs) == 2  # the run and its resumption, under one id
    assert {run.project for run in runs} == {"at_jax_test"} and {run.display_name for run in runs} == {"run"}
    config = {item.key: json.loads(item.value_json) for item in runs[0].config.update}
    assert config["model"] == "tiny-cnn-4" and config["metrics"]["writers"] == "jsonl,tensorboard,wandb"
    history = [(record.history.step.num, wandb_items(record.history.item))
               for record in records if record.HasField("history")]
    assert [step for step, _ in history] == [2, 4]
    jsonl = {}  # step -> the train and eval lines of that step, merged (as in wandb's row)
    for record in read_metrics(os.path.join(workdir, "metrics.jsonl")):
        jsonl.setdefault(record["step"], {}).update(record)
    for step, row in history:
        assert row["train/total"] == pytest.approx(jsonl[step]["train/total"])
        assert row["eval/accuracy"] == pytest.approx(jsonl[step]["eval/accuracy"])
    final = {}
    for record in records:
        if record.HasField("summary"):
            final.update(wandb_items(record.summary.update))
    assert final["accuracy"] == pytest.approx(summary["accuracy"]) and final["step"] == 4

    texts = tensorboard_texts(workdir)
    assert [(tag, step) for tag, step, _ in texts] == [("config/text_summary", 0), ("summary/text_summary", 2),
                                                        ("config/text_summary", 2), ("summary/text_summary", 4)]
    assert unindent(texts[2][2])["num_train_steps"] == 4
    assert unindent(texts[3][2])["accuracy"] == pytest.approx(summary["accuracy"])


def test_trainer_refuses_an_unknown_writer_before_writing(tmp_path):
    from at_jax.training import train_and_evaluate  # pylint: disable=import-outside-toplevel
    with pytest.raises(ConfigError, match="unknown writer 'mlflow'"):
        train_and_evaluate(tiny_config(**{"metrics.writers": "jsonl,mlflow"}), str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_attention_figure_of_a_transfer_run_goes_to_tensorboard(tmp_path, teacher_dir):
    """A student with a teacher draws figures/attention_maps.png at its end and TensorBoard takes it as an image;
    with jsonl alone (no writer takes images) nothing is drawn."""
    from at_jax.training import train_and_evaluate  # pylint: disable=import-outside-toplevel

    for name, writers in (("with_tb", "jsonl,tensorboard"), ("jsonl", "jsonl")):
        config = tiny_config(**{"metrics.writers": writers, "loss.at_beta": 100.0, "teacher.workdir": teacher_dir,
                                "num_train_steps": 2, "eval_every_steps": 0, "metrics.attention_figure": True})
        train_and_evaluate(config, str(tmp_path / name))
    figure = tmp_path / "with_tb" / "figures" / "attention_maps.png"
    assert figure.is_file() and not (tmp_path / "jsonl" / "figures").exists()
    values = {value.tag: value for event in tensorboard_events(tmp_path / "with_tb") for value in event.summary.value}
    image = values["figures/attention_maps"].image
    assert (image.height, image.width) == Image.open(figure).size[::-1]
