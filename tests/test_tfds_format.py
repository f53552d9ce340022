"""A TFDS set prepared in TFDS's default format (tfrecord, no random access) fails in one line that says how
to convert or rebuild it; an unprepared one says how to build it for random access (array_record)."""
import io
import json

import numpy as np
import pytest

from at_jax.data.registry import load_dataset
from at_jax.data.stream_sources import open_streaming
from at_jax.errors import DatasetError, UserError

tfds = pytest.importorskip("tensorflow_datasets")


def _png(image: np.ndarray) -> bytes:
    from PIL import Image  # pylint: disable=import-outside-toplevel
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _prepare_as_tfrecord(data_dir, dataset_name: str, version: str, splits: tuple[str, ...], num_classes: int):
    """A real TFDS preparation of ``dataset_name`` (3 examples a split), then recorded as tfrecord the way TFDS does
    (``fileFormat`` in dataset_info.json, the shard names): writing real tfrecord shards needs TensorFlow,
    which at_jax does not install, and the refusal reads only the metadata."""
    rng = np.random.default_rng(0)

    class TfrecordBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        name = dataset_name
        VERSION = tfds.core.Version(version)

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(8, 8, 3)),
                "label": tfds.features.ClassLabel(num_classes=num_classes)}))

        def _split_generators(self, dl_manager):
            return {split: self._generate_examples(split) for split in splits}

        def _generate_examples(self, split):
            for index in range(3):
                yield f"{split}{index}", {"image": _png(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)),
                                          "label": index}

    TfrecordBuilder(data_dir=str(data_dir), file_format="array_record").download_and_prepare()
    version_dir = data_dir / dataset_name / version
    for shard in version_dir.glob("*.array_record-*"):
        shard.rename(shard.with_name(shard.name.replace(".array_record-", ".tfrecord-")))
    info_file = version_dir / "dataset_info.json"
    info = json.loads(info_file.read_text())
    assert info["fileFormat"] == "array_record"
    info["fileFormat"] = "tfrecord"
    info_file.write_text(json.dumps(info))
    return version_dir


def test_a_tfrecord_cifar10_is_refused_with_the_rebuild_command(tmp_path):
    version_dir = _prepare_as_tfrecord(tmp_path, "cifar10", "3.0.2", ("train", "test"), 10)
    with pytest.raises(UserError) as error:
        load_dataset("cifar10", str(tmp_path))
    message = str(error.value)
    assert isinstance(error.value, DatasetError) and "\n" not in message
    assert f"the TFDS cifar10 in {tmp_path} was prepared as tfrecord" in message
    assert "needs array_record" in message
    assert f"--dataset_version_dir={version_dir} --out_file_format=array_record" in message
    assert f"tfds build cifar10 --data_dir {tmp_path} --file_format=array_record --overwrite" in message


def test_a_tfrecord_imagenet_is_refused_by_the_streaming_path(tmp_path):
    _prepare_as_tfrecord(tmp_path, "imagenet2012", "5.1.0", ("train", "validation"), 1000)
    with pytest.raises(DatasetError, match="imagenet2012 .* was prepared as tfrecord") as error:
        open_streaming("imagenet", str(tmp_path), image_size=16)
    assert ("tfds build imagenet2012 --manual_dir=TARS --data_dir "
            f"{tmp_path} --file_format=array_record --overwrite") in str(error.value)


def test_an_unprepared_tfds_set_says_how_to_build_it_for_random_access(tmp_path):
    with pytest.raises(DatasetError) as error:
        open_streaming("caltech_birds2011", str(tmp_path), image_size=16)
    assert str(error.value) == (f"no prepared TFDS caltech_birds2011 in {tmp_path}: prepare it with "
                                f"`tfds build caltech_birds2011 --data_dir {tmp_path} --file_format=array_record`")


def test_the_trainer_exits_2_with_the_one_line(tmp_path, cli_error):
    _prepare_as_tfrecord(tmp_path / "tfds", "cifar10", "3.0.2", ("train", "test"), 10)
    message = cli_error(["--config=configs/cifar10.py", f"--config.dataset.data_dir={tmp_path / 'tfds'}",
                         "--config.num_train_steps=1", f"--workdir={tmp_path / 'run'}"])
    assert "was prepared as tfrecord" in message and "--file_format=array_record" in message
    assert not (tmp_path / "run" / "config.json").exists()
