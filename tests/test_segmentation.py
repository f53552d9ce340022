"""Weakly supervised segmentation: upsampling, binarisation, Jaccard on known answers, and the CLI."""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from at_jax.figures.segmentation import (
    binarize,
    color_contrast_saliency,
    jaccard,
    segmentation_jaccard,
    upsample_bilinear,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------ the functions
def test_upsample_is_half_pixel_bilinear():
    ramp = np.array([[0.0, 1.0], [0.0, 1.0]], np.float32)
    result = np.asarray(upsample_bilinear(ramp, (4, 4)))
    np.testing.assert_allclose(result, np.tile([0.0, 0.25, 0.75, 1.0], (4, 1)), atol=1e-6)
    batch = np.stack([ramp, ramp.T])
    assert upsample_bilinear(batch, (6, 5)).shape == (2, 6, 5)


def test_binarize_threshold_is_on_min_max_normalised_map():
    values = np.array([[10.0, 12.0], [14.0, 20.0]], np.float32)  # normalised 0, 0.2, 0.4, 1
    np.testing.assert_array_equal(binarize(values, threshold=0.3), [[False, False], [True, True]])
    np.testing.assert_array_equal(binarize(values, threshold=0.2), [[False, True], [True, True]])
    assert not np.any(binarize(np.full((3, 3), 5.0), threshold=0.5))


def test_binarize_top_fraction_keeps_the_largest_pixels():
    values = np.arange(16, dtype=np.float32).reshape(4, 4)
    mask = np.asarray(binarize(values, top_fraction=0.25))
    np.testing.assert_array_equal(mask, values >= 12)
    assert np.asarray(binarize(values, top_fraction=0.1)).sum() == 2  # ceil(1.6)
    assert np.asarray(binarize(values, top_fraction=1.0)).all()
    per_map = np.asarray(binarize(np.stack([values, -values]), top_fraction=0.5))
    np.testing.assert_array_equal(per_map[0], values >= 8)
    np.testing.assert_array_equal(per_map[1], values <= 7)


def test_jaccard_known_overlaps():
    prediction = np.zeros((4, 4), bool)
    prediction[0:2] = True
    mask = np.zeros((4, 4), bool)
    mask[1:3] = True
    assert float(jaccard(prediction, mask)) == pytest.approx(4 / 12)
    assert float(jaccard(mask, mask)) == 1.0
    assert float(jaccard(prediction, ~prediction)) == 0.0
    assert float(jaccard(np.zeros((3, 3)), np.zeros((3, 3)))) == 1.0
    np.testing.assert_allclose(jaccard(np.stack([prediction, mask]), np.stack([mask, mask])), [1 / 3, 1.0])


def test_segmentation_of_an_upsampled_one_hot_map():
    attention = np.array([[[1.0, 0.0], [0.0, 0.0]]], np.float32)  # (1, 2, 2): top-left cell
    quadrant = np.zeros((1, 8, 8), bool)
    quadrant[:, :4, :4] = True
    top_half = np.zeros((1, 8, 8), bool)
    top_half[:, :4] = True
    score = jax.jit(lambda a, m: segmentation_jaccard(a, m, top_fraction=0.25))
    np.testing.assert_allclose(score(attention, quadrant), [1.0])
    np.testing.assert_allclose(score(attention, top_half), [0.5])
    # per axis the bilinear map is 1, 1, 0.875, 0.625, ...: threshold 0.75 keeps the 3x3 corner
    # (0.875**2 = 0.766 in, 0.625 out), threshold 0.8 drops its far corner pixel (8 of 9)
    corner = np.zeros((1, 8, 8), bool)
    corner[:, :3, :3] = True
    np.testing.assert_allclose(segmentation_jaccard(attention, corner, threshold=0.75), [1.0])
    np.testing.assert_allclose(segmentation_jaccard(attention, corner, threshold=0.8), [8 / 9])


def test_saliency_finds_a_coloured_square():
    image = np.full((12, 10, 3), 100.0, np.float32)
    image[3:7, 2:6] = (250.0, 20.0, 20.0)
    mask = np.zeros((12, 10), bool)
    mask[3:7, 2:6] = True
    saliency = color_contrast_saliency(image)
    assert saliency.shape == (12, 10)
    assert float(segmentation_jaccard(saliency, mask, threshold=0.5)) == 1.0


def test_bad_options_raise():
    maps = np.ones((2, 2))
    for options in ({}, {"threshold": 0.5, "top_fraction": 0.5}, {"threshold": 1.5}, {"top_fraction": 0.0}):
        with pytest.raises(ValueError):
            binarize(maps, **options)
    with pytest.raises(ValueError):
        jaccard(np.ones((2, 2)), np.ones((2, 3)))


# ------------------------------------------------------------------ the CLI
def write_png(path, array) -> None:
    Image.fromarray(np.asarray(array, np.uint8)).save(path)


def square_image(size, top, left, side):
    image = np.full((size, size, 3), 90, np.uint8)
    image[top:top + side, left:left + side] = (240, 240, 30)
    mask = np.zeros((size, size), np.uint8)
    mask[top:top + side, left:left + side] = 255
    return image, mask


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Three images of a yellow square on grey; two exact masks and one covering twice the square."""
    root = tmp_path_factory.mktemp("segment")
    images, masks = root / "images", root / "masks"
    images.mkdir()
    masks.mkdir()
    for name, (top, left) in {"a": (2, 3), "b": (8, 8), "c": (2, 9)}.items():
        image, mask = square_image(16, top, left, 6)
        if name == "c":
            mask[top + 6:top + 12, left:left + 6] = 255  # the square plus as much again below it
        write_png(images / f"{name}.png", image)
        write_png(masks / f"{name}.png", mask)
    return str(images), str(masks)


def run_segment(*args, timeout: int = 300):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "at_jax.segment", *args], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=timeout)


def test_cli_saliency_baseline_scores_known_masks(folders):
    images, masks = folders
    result = run_segment(f"--images={images}", f"--masks={masks}", "--per_image")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[:3] == ["a\t1.0000", "b\t1.0000", "c\t0.5000"]
    assert lines[-1].startswith(f"mean Jaccard {(1 + 1 + 0.5) / 3:.4f} over 3 images")


def test_cli_bad_input_is_one_line_exit_2(folders, tmp_path):
    images, _ = folders
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = ((f"--masks={empty}", "without a mask"), (f"--masks={tmp_path / 'missing'}", "--masks"),
             (f"--workdir={empty}", "config.json"))
    for argument, expected in cases:
        result = run_segment(f"--images={images}", argument if "--masks" in argument else f"--masks={images}",
                             *([argument] if "--workdir" in argument else []))
        assert result.returncode == 2
        assert result.stderr.startswith("at_jax: error: ") and expected in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


# ------------------------------------------------------------------ with a trained model's workdir
def fake_run(workdir, model_name: str, image_size: int = 16) -> None:
    """A workdir as the trainer leaves it (config.json + orbax checkpoint), with numpy-drawn weights."""
    import at_jax.models.cra  # noqa: F401  pylint: disable=import-outside-toplevel
    import at_jax.models.vgg_att  # noqa: F401  pylint: disable=import-outside-toplevel
    from at_jax.training.checkpoint import Checkpointer  # pylint: disable=import-outside-toplevel
    from at_jax.models import create  # pylint: disable=import-outside-toplevel

    model = create(model_name, 10)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, image_size, image_size, 3)),
                                               train=False))
    rng = np.random.default_rng(0)
    variables = jax.tree.map(lambda s: rng.normal(0, 0.3, s.shape).astype(np.float32), shapes)
    variables["batch_stats"] = jax.tree.map(np.abs, variables["batch_stats"])
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as file:
        json.dump({"model": model_name, "num_classes": 10,
                   "dataset": {"name": "synthetic", "data_dir": "", "seed": 0, "num_train": 8, "num_test": 8,
                               "image_size": image_size}}, file)
    checkpointer = Checkpointer(workdir)
    checkpointer.save(3, {"step": np.int32(3), "params": {"model": variables["params"]},
                          "batch_stats": variables["batch_stats"]})
    checkpointer.close()


def test_model_attention_scores_match_the_direct_computation(folders, tmp_path):
    from at_jax.models.vgg_att import attention_maps  # pylint: disable=import-outside-toplevel
    # pylint: disable-next=import-outside-toplevel
    from at_jax.figures.segment_folder import ModelAttention, evaluate, pair_files
    from at_jax.training.checkpoint import load_run, model_from_config, variables_of  # pylint: disable=C0415

    workdir = str(tmp_path / "ltpa")
    fake_run(workdir, "vgg-att2-concat-pc")
    images, masks = folders
    pairs = pair_files(images, masks)
    run = load_run(workdir)
    source = ModelAttention(model_from_config(run.config), variables_of(run), run.config, level=-1, source="auto",
                            image_size=0, workdir=workdir)
    assert source.image_size == 16
    scores = evaluate(pairs, source, threshold=None, top_fraction=0.2, batch_size=2)
    assert list(scores) == ["a", "b", "c"]

    x = np.stack([np.asarray(Image.open(path).convert("RGB"), np.float32) for _, path, _ in pairs])
    x = (x / 255.0 - np.asarray(source.mean)) / np.asarray(source.std)
    maps = jax.jit(functools.partial(attention_maps, source.model))(source.variables, jnp.asarray(x, jnp.float32))
    assert [m.shape for m in maps] == [(3, 8, 8), (3, 4, 4)]
    for index, (stem, _, mask_path) in enumerate(pairs):
        mask = np.asarray(Image.open(mask_path).convert("L")) > 0
        expected = float(segmentation_jaccard(maps[-1][index], mask, top_fraction=0.2))
        assert scores[stem] == pytest.approx(expected, abs=1e-6)


def test_cli_with_a_workdir_falls_back_to_activation_attention(folders, tmp_path):
    workdir = str(tmp_path / "wrn")
    fake_run(workdir, "wrn-10-1")
    images, masks = folders
    result = run_segment(f"--images={images}", f"--masks={masks}", f"--workdir={workdir}", "--level=0",
                         "--top_fraction=0.15")
    assert result.returncode == 0, result.stderr
    assert "over 3 images (wrn-10-1 map 0)" in result.stdout
    score = float(result.stdout.split("mean Jaccard ")[1].split()[0])
    assert 0.0 <= score <= 1.0
    result = run_segment(f"--images={images}", f"--masks={masks}", f"--workdir={workdir}", "--source=ltpa")
    assert result.returncode == 2 and "sows no attention maps" in result.stderr
