"""``python -m at_jax.check_data`` and ``dataset.verify``: every unreadable image of a folder reported at once
(zero bytes, not an image, truncated), exit 2; a clean folder passes."""
import io
import os
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from at_jax.data import verify
from at_jax.data.from_config import verify_images
from at_jax.errors import DatasetError
from image_data import write_image_folder
from trainer_utils import REPO

CLASSES = ("ant", "bee", "cat")


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """3 classes: 8 train images each (a grayscale, a CMYK JPEG and two PNGs among them), 3 val images each."""
    return write_image_folder(tmp_path_factory.mktemp("clean") / "data", classes=CLASSES)


@pytest.fixture
def broken(clean, tmp_path):
    """The clean folder plus a zero-byte .JPEG, a text file named .JPEG and a JPEG cut in half; their reasons."""
    root = tmp_path / "broken"
    shutil.copytree(clean, root)
    (root / "train" / "ant" / "empty.JPEG").write_bytes(b"")
    (root / "train" / "bee" / "notes.JPEG").write_text("not a picture\n")
    whole = (root / "val" / "cat" / "0000.JPEG").read_bytes()
    (root / "val" / "cat" / "cut.JPEG").write_bytes(whole[:len(whole) // 2])
    return root, {str(root / "train" / "ant" / "empty.JPEG"): "empty file (0 bytes)",
                  str(root / "train" / "bee" / "notes.JPEG"): "not an image file PIL can read (14 bytes)",
                  str(root / "val" / "cat" / "cut.JPEG"): "damaged: image file is truncated"}


def check_data(*args):
    return subprocess.run([sys.executable, "-m", "at_jax.check_data", *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=REPO, env=dict(os.environ, PYTHONUNBUFFERED="1"))


def test_every_bad_file_is_listed_at_once_and_the_command_exits_2(broken):
    root, expected = broken
    result = check_data(root, "--workers=2")
    assert result.returncode == 2, result.stderr
    listed = dict(line.split("\t") for line in result.stdout.splitlines())
    assert listed.keys() == expected.keys()
    assert all(listed[path].startswith(reason) for path, reason in expected.items()), listed
    total = 3 * (8 + 3) + 3
    assert result.stderr.splitlines()[-1] == f"at_jax: error: 3 of {total} image files unreadable; listed above"


def test_a_clean_folder_exits_0_with_its_count(clean):
    result = check_data(clean)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{3 * (8 + 3)} image files readable"
    assert f"{3 * (8 + 3)}/{3 * (8 + 3)}" in result.stderr   # the progress line


def test_one_split_folder_and_the_trainers_listing(broken):
    root, expected = broken
    files = verify.image_files(str(root / "val"))
    assert len(files) == 3 * 3 + 1 and all(path.startswith(str(root / "val")) for path in files)
    bad = verify.find_unreadable(files, workers=1)
    assert [item.path for item in bad] == [str(root / "val" / "cat" / "cut.JPEG")]


def test_progress_is_reported_and_ends_at_the_total(broken):
    root, expected = broken
    files = verify.image_files(str(root))
    calls = []
    bad = verify.find_unreadable(files, workers=2, progress=lambda done, total: calls.append((done, total)),
                                 interval=0.0)
    assert {item.path for item in bad} == expected.keys()
    assert calls[-1] == (len(files), len(files)) and [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_a_truncated_jpeg_passes_pils_verify_but_not_the_check(broken):
    """Why the check decodes (at 1/8 scale) instead of calling ``Image.verify()`` alone."""
    root, _ = broken
    cut = root / "val" / "cat" / "cut.JPEG"
    with Image.open(io.BytesIO(cut.read_bytes())) as image:
        image.verify()   # no error: the header is intact
    assert verify.check_image(str(cut)).startswith("damaged: image file is truncated")
    assert verify.check_image(str(root / "train" / "ant" / "0001.JPEG")) is None   # a CMYK JPEG
    assert verify.check_image(str(root / "missing.JPEG")).startswith("cannot read the file")


def test_dataset_verify_raises_one_line_naming_the_count(broken, clean, caplog):
    root, expected = broken
    with pytest.raises(DatasetError) as error:
        verify_images("image_folder", str(root), workers=2)
    assert str(error.value).startswith(f"3 of {3 * (8 + 3) + 3} image files unreadable in {root}")
    assert "\n" not in str(error.value)
    assert all(path in caplog.text for path in expected)
    verify_images("imagenet", str(clean), workers=-1)   # a folder under the imagenet name: checked, clean


def test_the_trainer_stops_before_writing_anything(broken, tmp_path, run_main, capsys):
    root, _ = broken
    workdir = tmp_path / "run"
    with pytest.raises(SystemExit) as exited:
        run_main(["--config=configs/imagenet.py", "--config.model=wrn-10-1", f"--config.dataset.data_dir={root}",
                  "--config.dataset.verify=True", "--config.dataset.image_size=16", "--config.batch_size=4",
                  "--config.num_train_steps=1", f"--workdir={workdir}"])
    assert exited.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"at_jax: error: 3 of {3 * (8 + 3) + 3} image files unreadable in {root}")
    assert not (workdir / "config.json").exists() and not (workdir / "checkpoints").exists()
