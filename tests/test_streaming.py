"""The streaming input pipeline on generated JPEG folders: host augmentation, batch order as a function of
(seed, step), disjoint process parts, iterator state, and bad input."""
import io
import shutil

import numpy as np
import pytest
from PIL import Image

from at_jax.data import host_augment
from at_jax.data.batch_order import batch_indices
from at_jax.data.from_config import DEVICE_DATA_LIMIT_BYTES, input_data
from at_jax.data.stream_sources import open_streaming
from at_jax.data.streaming import ProcessPart, TrainBatch, eval_pipeline, train_pipeline
from at_jax.errors import DatasetError
from image_data import random_image, write_image_folder

SIZE = 24


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("folder"), train_per_class=10, val_per_class=3)


@pytest.fixture(scope="module")
def dataset(folder):
    return open_streaming("image_folder", str(folder), image_size=SIZE)


def _jpeg(image: Image.Image, quality=95) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def test_random_resized_box_follows_torchvision_bounds():
    rng = np.random.default_rng(0)
    for width, height in ((500, 375), (40, 300), (64, 64)):
        for _ in range(200):
            left, top, crop_width, crop_height = host_augment.random_resized_box(width, height, rng)
            assert 0 <= left and left + crop_width <= width and 0 <= top and top + crop_height <= height
            assert crop_width >= 1 and crop_height >= 1
    fractions = [np.prod(host_augment.random_resized_box(500, 500, rng)[2:]) / 500 ** 2 for _ in range(2000)]
    assert 0.07 < min(fractions) and max(fractions) <= 1.0 and 0.45 < np.mean(fractions) < 0.63  # U(0.08, 1): 0.54


def test_train_image_is_deterministic_for_its_rng_and_reduced_decoding_matches_full():
    photo = random_image(np.random.default_rng(1), size_range=(900, 1000))
    encoded = _jpeg(photo)
    first = host_augment.train_image(encoded, "photo", SIZE, np.random.default_rng(5))
    again = host_augment.train_image(encoded, "photo", SIZE, np.random.default_rng(5))
    assert first.shape == (SIZE, SIZE, 3) and first.dtype == np.uint8 and np.array_equal(first, again)
    # The same crop from the decoded array (no DCT scaling) differs only by resampling noise.
    full = host_augment.train_image(np.asarray(photo), "photo", SIZE, np.random.default_rng(5))
    assert np.abs(first.astype(int) - full.astype(int)).mean() < 6


def test_eval_image_is_the_centre_crop_after_resizing_to_256_224():
    image = np.zeros((140, 280, 3), np.uint8)
    image[:, 140 - 35:140 + 35] = 255      # a white band, 70 px wide, in the middle of a 280 px wide image
    crop = host_augment.eval_image(image, "band", 64)
    assert crop.shape == (64, 64, 3)
    # shorter side 140 -> 73 (= 64 * 256 / 224): the centre 64 px show 64 / 73 * 140 = 123 px of the original,
    # so the band (70 px) fills the middle of the crop and both edges stay black
    column_means = crop[..., 0].mean(axis=0)
    assert column_means[32] > 250 and column_means[0] < 5 and column_means[-1] < 5


def test_odd_images_decode_to_rgb(dataset):
    assert dataset.num_classes == 3 and dataset.num_train == 30 and dataset.num_eval == 9
    batch = TrainBatch(dataset.train, seed=0, global_batch=30, part=ProcessPart(0, 30), image_size=SIZE,
                       threads=2)(0)
    assert batch["images"].shape == (30, SIZE, SIZE, 3) and batch["images"].dtype == np.uint8
    assert sorted(np.bincount(batch["labels"])) == [10, 10, 10]


def test_batch_is_a_function_of_seed_and_step_split_disjointly_over_processes(dataset):
    labels = dataset.train.labels
    whole = TrainBatch(dataset.train, seed=3, global_batch=8, part=ProcessPart.of(8, 0, 1), image_size=SIZE,
                       threads=1)
    for step in (0, 2, 7):   # 3 steps per epoch: 7 is in the third epoch
        batch = whole(step)
        np.testing.assert_array_equal(batch["labels"], labels[batch_indices(3, step, 30, 8)])
        parts = [TrainBatch(dataset.train, seed=3, global_batch=8, part=ProcessPart.of(8, p, 2), image_size=SIZE,
                            threads=1)(step) for p in range(2)]
        np.testing.assert_array_equal(np.concatenate([p["images"] for p in parts]), batch["images"])
    indices = batch_indices(3, 7, 30, 8)
    assert not set(indices[:4]) & set(indices[4:])
    assert not np.array_equal(whole(1)["images"], TrainBatch(dataset.train, seed=4, global_batch=8,
                                                             part=ProcessPart(0, 8), image_size=SIZE, threads=1)(1)["images"])


@pytest.mark.parametrize("workers", [0, 2])
def test_iterator_state_resumes_with_the_same_batches(dataset, workers):
    def pipeline(first_step=0):
        return train_pipeline(dataset.train, seed=1, global_batch=6, num_steps=12, part=ProcessPart(0, 6),
                              image_size=SIZE, workers=workers, first_step=first_step)

    iterator = iter(pipeline())
    [next(iterator) for _ in range(5)]
    state = iterator.get_state()
    expected = [next(iterator) for _ in range(3)]
    iterator.close()
    restored = iter(pipeline())
    restored.set_state(state)
    started_at_5 = iter(pipeline(first_step=5))
    for batch in expected:
        for other in (next(restored), next(started_at_5)):
            assert all(np.array_equal(batch[key], other[key]) for key in batch)
    restored.close()
    started_at_5.close()


def test_eval_pipeline_pads_the_last_chunk_and_splits_chunks_over_processes(dataset):
    whole = list(eval_pipeline(dataset.eval, chunk=4, part=ProcessPart(0, 4), image_size=SIZE, workers=0))
    assert len(whole) == 3 and [b["mask"].sum() for b in whole] == [4, 4, 1]
    np.testing.assert_array_equal(np.concatenate([b["labels"] for b in whole])[:9], dataset.eval.labels)
    halves = [list(eval_pipeline(dataset.eval, chunk=4, part=ProcessPart.of(4, p, 2), image_size=SIZE, workers=0))
              for p in range(2)]
    for index, batch in enumerate(whole):
        np.testing.assert_array_equal(np.concatenate([halves[0][index]["images"], halves[1][index]["images"]]),
                                      batch["images"])


def _broken_copy(folder, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    return broken


@pytest.mark.parametrize("workers", [0, 1])
def test_a_corrupt_jpeg_fails_the_batch_naming_the_file(folder, tmp_path, workers):
    broken = _broken_copy(folder, tmp_path)
    (broken / "train" / "bee" / "0009.JPEG").write_bytes(b"\xff\xd8 not really a jpeg")
    dataset = open_streaming("image_folder", str(broken), image_size=SIZE)
    iterator = iter(train_pipeline(dataset.train, seed=0, global_batch=30, num_steps=1, part=ProcessPart(0, 30),
                                   image_size=SIZE, workers=workers))
    with pytest.raises(DatasetError, match=r"cannot read image .*bee/0009.JPEG.*remove or replace it"):
        next(iterator)
    iterator.close()


def test_truncated_jpeg_fails_when_decoded(folder, tmp_path):
    broken = _broken_copy(folder, tmp_path)
    path = broken / "train" / "ant" / "0008.JPEG"
    path.write_bytes(path.read_bytes()[:200])
    dataset = open_streaming("image_folder", str(broken), image_size=SIZE)
    index = dataset.train.files.index(str(path))
    record = dataset.train[index]
    with pytest.raises(DatasetError, match="0008.JPEG"):
        host_augment.train_image(record["image"], record["name"], SIZE, np.random.default_rng(0))


def test_folder_layout_errors(folder, tmp_path):
    broken = _broken_copy(folder, tmp_path)
    shutil.rmtree(broken / "val" / "cat")
    with pytest.raises(DatasetError, match="val/ the same"):
        open_streaming("image_folder", str(broken), image_size=SIZE)
    (broken / "val" / "cat").mkdir()
    with pytest.raises(DatasetError, match="holds no images"):
        open_streaming("image_folder", str(broken), image_size=SIZE)
    with pytest.raises(DatasetError, match="has no train/ folder"):
        open_streaming("image_folder", str(tmp_path / "nowhere"), image_size=SIZE)


def test_the_input_path_is_chosen_in_one_place(folder, monkeypatch):
    config = {"name": "image_folder", "data_dir": str(folder), "image_size": SIZE}
    assert input_data(dict(config, pipeline="stream"))[0] == "stream"
    assert input_data(dict(config, pipeline="device"))[0] == "device"
    assert input_data(dict(config, pipeline="auto"))[0] == "device"       # 39 small images
    monkeypatch.setattr("at_jax.data.from_config.DEVICE_DATA_LIMIT_BYTES", 39 * 3 * SIZE * SIZE - 1)
    assert input_data(dict(config, pipeline="auto"))[0] == "stream"
    assert DEVICE_DATA_LIMIT_BYTES == 2 * 1024 ** 3
    with pytest.raises(DatasetError, match="has no streaming source"):
        input_data({"name": "digits", "pipeline": "stream"})
    with pytest.raises(DatasetError, match="dataset.pipeline must be one of"):
        input_data(dict(config, pipeline="fast"))
