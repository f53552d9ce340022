"""Every unreadable image of an image folder, found before a long run (``python -m at_jax.check_data DIR``,
``dataset.verify``).

A streamed run decodes an image only when a batch reaches it, so one zero-byte, truncated or non-image file can
stop it hours in. This pass lists the files as the trainer does (``image_folder.folder_classes`` and
``list_split``: ``DIR/train/<class>/*`` and ``DIR/val/<class>/*``, or one split folder ``DIR/<class>/*``) and
checks each: the file is read, PIL opens it (the header: format and size), and its pixels are decoded, JPEGs at
1/8 scale (libjpeg's DCT scaling, which still reads the whole entropy-coded stream, so a truncated file fails
as it would in training), other formats whole. PIL's ``verify()`` alone is not enough: it passes a truncated
JPEG. Files are checked by a pool of threads (PIL releases the GIL while it decodes); every unreadable file is
reported at once, with its reason.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import io
import time
from typing import Callable, Sequence

from absl import logging

from at_jax.data.dataset import DatasetError
from at_jax.data.image_folder import class_folders, folder_classes, list_split
from at_jax.errors import first_line
from at_jax.run_files import as_path, check_reachable

#: Files per task of the thread pool (the pool holds one future per chunk, not per file).
CHUNK = 64


@dataclasses.dataclass(frozen=True)
class Unreadable:
    """An image file the trainer could not decode, and why."""
    path: str
    reason: str


def image_files(data_dir: str) -> list[str]:
    """The image files of ``data_dir``: both splits of an image-folder dataset (it has ``train/``), else the
    class folders of one split, ``data_dir/<class>/*``; listed by the trainer's own functions."""
    root = check_reachable(data_dir, role="data folder")
    if not root.is_dir():
        raise DatasetError(f"{data_dir} is not a folder (expected DIR/train/<class>/* and DIR/val/<class>/*, "
                           "or DIR/<class>/*)")
    if (root / "train").is_dir():
        root, classes = folder_classes(data_dir)
        splits = [root / "train", root / "val"]
    else:
        classes, splits = class_folders(root), [root]
        if not classes:
            raise DatasetError(f"{data_dir} holds no class folders (expected DIR/<class>/<image>)")
    return [str(path) for split in splits for path in list_split(split, classes)[0]]


def check_image(path: str) -> str | None:
    """Why the image at ``path`` cannot be decoded (one line), or None when it can (module docstring)."""
    from PIL import Image, UnidentifiedImageError  # pylint: disable=import-outside-toplevel
    try:
        encoded = as_path(path).read_bytes()
    except OSError as error:
        return f"cannot read the file: {first_line(error)}"
    if not encoded:
        return "empty file (0 bytes)"
    try:
        with Image.open(io.BytesIO(encoded)) as image:
            if image.format == "JPEG":
                image.draft(image.mode, (max(1, image.size[0] // 8), max(1, image.size[1] // 8)))
            image.load()
    except UnidentifiedImageError:
        return f"not an image file PIL can read ({len(encoded)} bytes)"
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        return f"damaged: {first_line(error)}"
    return None


def _check_chunk(paths: Sequence[str]) -> list[str | None]:
    return [check_image(path) for path in paths]


def find_unreadable(files: Sequence[str], workers: int = 2, progress: Callable[[int, int], None] | None = None,
                    interval: float = 0.5) -> list[Unreadable]:
    """The files of ``files`` that cannot be decoded, in order, checked by ``workers`` threads;
    ``progress(done, total)`` is called at most every ``interval`` seconds and once at the end."""
    files = [str(path) for path in files]
    chunks = [files[start:start + CHUNK] for start in range(0, len(files), CHUNK)]
    unreadable, done, last = [], 0, time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max(1, int(workers))) as pool:
        for chunk, reasons in zip(chunks, pool.map(_check_chunk, chunks)):
            unreadable += [Unreadable(path, reason) for path, reason in zip(chunk, reasons) if reason]
            done += len(chunk)
            if progress is not None and time.monotonic() - last >= interval:
                progress(done, len(files))
                last = time.monotonic()
    if progress is not None:
        progress(done, len(files))
    return unreadable


def summary(unreadable: Sequence[Unreadable], total: int) -> str:
    """The one-line verdict of a check with unreadable files."""
    return f"{len(unreadable)} of {total} image files unreadable"


def require_readable(data_dir: str, workers: int) -> int:
    """The trainer's ``dataset.verify``: checks every image of ``data_dir``, logs each unreadable one with its
    reason and raises one :class:`DatasetError` when there are any; returns the number of files checked."""
    files = image_files(data_dir)
    logging.info("dataset.verify: checking %d image files in %s with %d threads", len(files), data_dir, workers)
    unreadable = find_unreadable(files, workers, interval=10.0, progress=lambda done, total: logging.info(
        "dataset.verify: %d of %d image files checked", done, total))
    for bad in unreadable:
        logging.error("unreadable image %s: %s", bad.path, bad.reason)
    if unreadable:
        raise DatasetError(f"{summary(unreadable, len(files))} in {data_dir} (each logged above; `python -m "
                           f"at_jax.check_data {data_dir}` lists them): fix or remove them, then run again")
    return len(files)
