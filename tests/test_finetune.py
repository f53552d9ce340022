"""Fine-tuning transfer (paper Table 4): configs/finetune.py end to end on a generated image folder, from
"imported" ImageNet weights (torchvision layout, no torch needed), with exactly the frozen parts frozen."""
import json
import os
import pathlib

import jax
import numpy as np
import pytest
from flax import traverse_util
from PIL import Image

import torchvision_reference as reference
from at_jax.data import load_dataset
from at_jax.errors import DatasetError
from at_jax.training.checkpoint import Checkpointer, load_run
from at_jax.training.finetune import is_frozen
from at_jax.training.torchvision_import import write_imported_run

FIXTURE = np.load(pathlib.Path(__file__).parent / "fixtures" / "torchvision_resnets.npz")
SMALL = ["--config.dataset.image_size=32", "--config.augment.pad=4", "--config.batch_size=6",
         "--config.num_train_steps=2", "--config.log_every_steps=1", "--config.checkpoint_every_steps=2",
         "--config.eval_batch_size=6", "--config.progress=False", "--config.metrics.writers=jsonl",
         "--config.optimizer.learning_rate=1e-4"]  # the stand-in weights give logits of ~1e3: small steps


def _image(rng, mode):
    size = tuple(int(s) for s in rng.integers(24, 64, 2))
    array = rng.integers(0, 256, size[::-1] + (3,), dtype=np.uint8)
    image = Image.fromarray(array)
    return image.convert(mode) if mode != "RGB" else image


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """3 classes; 4 train / 2 val images each, varied sizes; a PNG, a grayscale and a CMYK JPEG among them."""
    root = tmp_path_factory.mktemp("birds")
    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("val", 2)):
        for name in ("albatross", "finch", "wren"):
            (root / split / name).mkdir(parents=True)
            for index in range(count):
                mode = ("L", "CMYK", "RGB", "RGB")[index]
                suffix = ".png" if index == 3 else ".jpg"
                _image(rng, mode).save(root / split / name / f"{index}{suffix}")
    return root


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """ResNet-18 and -34 runs in torchvision's layout with a 10-class head (standing in for ImageNet's)."""
    root = tmp_path_factory.mktemp("imagenet")
    for arch in ("resnet18", "resnet34"):
        layout = [(key, tuple(shape)) for key, shape in json.loads(str(FIXTURE[f"{arch}/layout"]))]
        write_imported_run(arch, reference.state_dict(layout), str(root / arch))
    return root


def test_image_folder_loads_every_image_as_rgb(folder):
    dataset = load_dataset("image_folder", str(folder), image_size=32)
    assert dataset.train_images.shape == (12, 32, 32, 3) and dataset.test_images.shape == (6, 32, 32, 3)
    assert dataset.num_classes == 3 and list(np.bincount(dataset.train_labels)) == [4, 4, 4]
    assert dataset.mean == (0.485, 0.456, 0.406)


def test_image_folder_bad_input(folder, tmp_path):
    import shutil  # pylint: disable=import-outside-toplevel
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    (broken / "train" / "wren" / "4.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match="cannot read image .*4.jpg"):
        load_dataset("image_folder", str(broken), image_size=32)
    (broken / "train" / "wren" / "4.jpg").unlink()
    shutil.rmtree(broken / "val" / "wren")
    with pytest.raises(DatasetError, match="val/ the same"):
        load_dataset("image_folder", str(broken), image_size=32)
    (broken / "val" / "wren").mkdir()
    with pytest.raises(DatasetError, match="holds no images"):
        load_dataset("image_folder", str(broken), image_size=32)


def _flat(tree):
    return {"/".join(path): np.asarray(value) for path, value in traverse_util.flatten_dict(tree).items()}


@pytest.mark.slow
def test_teacher_finetune_then_at_student_with_exactly_the_frozen_parts_frozen(folder, imported, tmp_path,
                                                                               run_main):
    teacher_dir, student_dir = tmp_path / "resnet34", tmp_path / "resnet18_at"
    run_main(["--config=configs/finetune.py:student=resnet34", f"--workdir={teacher_dir}",
              f"--config.dataset.data_dir={folder}", f"--config.init.workdir={imported / 'resnet34'}", *SMALL])
    run_main(["--config=configs/finetune.py:student=resnet18,method=at", f"--workdir={student_dir}",
              f"--config.dataset.data_dir={folder}", f"--config.init.workdir={imported / 'resnet18'}",
              f"--config.teacher.workdir={teacher_dir}", *SMALL])
    record = [r for r in map(json.loads, open(student_dir / "metrics.jsonl")) if "train/at" in r][0]
    assert set(record) >= {"train/at/0", "train/at/1"} and "train/at/2" not in record   # the last two groups
    saved = json.load(open(student_dir / "config.json"))
    assert saved["num_classes"] == 3 and saved["teacher"]["workdir"] == str(teacher_dir)

    start, end = load_run(str(imported / "resnet18")), load_run(str(student_dir))
    before, after = _flat(start.params), _flat(end.params)
    assert after["fc/kernel"].shape == (512, 3)      # a new head for the folder's classes
    freeze = {"batch_norm": True, "modules": ("conv1", "bn1", "layer1_")}
    frozen = [name for name in after if is_frozen(name.split("/"), freeze)]
    trained = [name for name in after if name not in frozen and not name.startswith("fc/")]
    assert "conv1/kernel" in frozen and "layer1_1/conv2/kernel" in frozen and "layer4_1/bn2/scale" in frozen
    for name in frozen:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)   # bit-identical
    assert all(not np.array_equal(after[name], before[name]) for name in trained), "a trained weight did not move"
    assert "layer4_1/conv2/kernel" in trained and "layer2_0/downsample_conv/kernel" in trained
    for name, value in _flat(end.batch_stats).items():   # inference-mode batch norm: statistics untouched
        np.testing.assert_array_equal(value, _flat(start.batch_stats)[name], err_msg=name)
    assert Checkpointer(str(student_dir), read_only=True).latest_step() == 2


def test_bounding_box_crop():
    from at_jax.data.tfds_images import bbox_crop  # pylint: disable=import-outside-toplevel
    image = np.arange(10 * 20 * 3, dtype=np.uint8).reshape(10, 20, 3)
    np.testing.assert_array_equal(bbox_crop(image, (0.2, 0.25, 0.6, 0.5)), image[2:6, 5:10])
    np.testing.assert_array_equal(bbox_crop(image, (0.6, 0.5, 0.2, 0.25)), image[2:6, 5:10])   # corners swapped
    assert bbox_crop(image, (0.5, 0.5, 0.5, 0.5)).shape == image.shape                          # empty box


def test_cub_from_tfds_mock_data_through_the_finetune_config(imported, tmp_path, run_main):
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
        run_main(["--config=configs/finetune.py:dataset=cub", f"--workdir={tmp_path / 'cub'}",
                  f"--config.init.workdir={imported / 'resnet18'}", *SMALL])
    saved = json.load(open(tmp_path / "cub" / "config.json"))
    assert saved["dataset"]["name"] == "caltech_birds2011" and saved["dataset"]["bbox_crop"] is True
    assert saved["num_classes"] == 200 and load_run(str(tmp_path / "cub")).params["fc"]["kernel"].shape == (512, 200)
