"""Host input-pipeline throughput: at_jax's grain pipeline against a torch ``DataLoader`` + torchvision transforms.

Both read the same image folder (``DIR/train/<class>/*.JPEG``) with the same number of worker processes and
produce shuffled batches of the ImageNet train transform: decode, RandomResizedCrop 224 (area 8-100 %,
aspect 3/4-4/3, bilinear), horizontal flip.

* ``--framework jax``: ``at_jax.data.streaming.train_pipeline`` (grain ``mp_prefetch`` workers, each decoding
  whole batches with ``--threads`` threads; JPEGs decoded at a reduced DCT scale when the crop allows).
  Batches are uint8: the trainer normalises on the device, inside the compiled step.
* ``--framework torch``: ``torchvision.datasets.ImageFolder`` with ``RandomResizedCrop``,
  ``RandomHorizontalFlip``, ``ToTensor``, ``Normalize`` in a ``DataLoader`` (shuffle, drop_last, persistent
  workers, prefetch factor 2): the torchvision ImageNet reference recipe, which normalises on the host
  (``--torch-uint8``: ``PILToTensor`` instead, uint8 like at_jax's batches: decode and crop alone compared).

Worker start and the first ``--warmup`` batches are excluded; the next ``--batches`` are timed.
``--make-data DIR --images N`` writes a folder of N photo-sized JPEGs (500 x 375 on average, textured so
that they compress like photographs) first.

    python benchmarks/input_throughput.py --make-data /tmp/folder --images 2000
    python benchmarks/input_throughput.py --framework jax --data-dir /tmp/folder --workers 2 --json
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def make_data(root: str, images: int, classes: int = 10, seed: int = 0) -> None:
    """``root/train/<class>/*.JPEG`` (and a small val/) of photo-like JPEGs, quality 90."""
    from PIL import Image  # pylint: disable=import-outside-toplevel
    rng = np.random.default_rng(seed)
    for split, count in (("train", images), ("val", max(classes, images // 50))):
        for index in range(count):
            folder = os.path.join(root, split, f"n{index % classes:08d}")
            os.makedirs(folder, exist_ok=True)
            width, height = int(rng.integers(350, 650)), int(rng.integers(260, 490))
            coarse = rng.integers(0, 256, (height // 16 + 2, width // 16 + 2, 3), dtype=np.uint8)
            smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), np.float32)
            texture = smooth + rng.normal(0, 12, (height, width, 3))
            Image.fromarray(np.clip(texture, 0, 255).astype(np.uint8)).save(
                os.path.join(folder, f"{index:06d}.JPEG"), quality=90)


def time_batches(iterator, warmup: int, batches: int) -> float:
    """Seconds for ``batches`` batches after ``warmup`` untimed ones."""
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return time.perf_counter() - start


def run_jax(args: argparse.Namespace) -> float:
    from at_jax.data.stream_sources import open_streaming  # pylint: disable=import-outside-toplevel
    from at_jax.data.streaming import ProcessPart, close_pipeline, train_pipeline  # pylint: disable=C0415
    dataset = open_streaming("image_folder", args.data_dir, image_size=args.image_size)
    pipeline = train_pipeline(dataset.train, seed=0, global_batch=args.batch_size, num_steps=10 ** 6,
                              part=ProcessPart(0, args.batch_size), image_size=args.image_size,
                              workers=args.workers, threads=args.threads)
    iterator = iter(pipeline)
    try:
        return time_batches(iterator, args.warmup, args.batches)
    finally:
        close_pipeline(iterator)


def run_torch(args: argparse.Namespace) -> float:
    import torch  # pylint: disable=import-outside-toplevel
    from torchvision import datasets, transforms  # pylint: disable=import-outside-toplevel
    to_tensor = ([transforms.PILToTensor()] if args.torch_uint8 else
                 [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    transform = transforms.Compose([
        transforms.RandomResizedCrop(args.image_size), transforms.RandomHorizontalFlip(), *to_tensor])
    dataset = datasets.ImageFolder(os.path.join(args.data_dir, "train"), transform)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=args.batch_size, shuffle=True, drop_last=True, num_workers=args.workers,
        persistent_workers=args.workers > 0, prefetch_factor=2 if args.workers > 0 else None)

    def forever():
        while True:
            yield from loader

    return time_batches(forever(), args.warmup, args.batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework", choices=("jax", "torch"))
    parser.add_argument("--data-dir")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None,
                        help="jax: decoding threads per worker (default: the trainer's, 1 with workers, 4 without)")
    parser.add_argument("--torch-uint8", action="store_true",
                        help="torch: uint8 tensors (PILToTensor), no host normalisation, as at_jax's batches")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--make-data", help="write a folder of photo-sized JPEGs here and exit")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.make_data:
        make_data(args.make_data, args.images)
        return
    if not args.framework or not args.data_dir:
        parser.error("--framework and --data-dir are required (or --make-data)")
    seconds = (run_jax if args.framework == "jax" else run_torch)(args)
    images_per_second = args.batches * args.batch_size / seconds
    workers = max(1, args.workers)
    threads = 1
    if args.framework == "jax":   # the torch environment need not have at_jax's dependencies
        from at_jax.data.streaming import decoding_threads  # pylint: disable=import-outside-toplevel
        threads = decoding_threads(args.workers, args.threads)
    common.emit(dict(common.machine_facts(), framework=args.framework, torch_uint8=args.torch_uint8,
                     workers=args.workers, threads=threads,
                     batch_size=args.batch_size, image_size=args.image_size, batches=args.batches,
                     images_per_second=round(images_per_second, 1),
                     ms_per_image_per_worker=round(1000 * workers / images_per_second, 3)), args.json)


if __name__ == "__main__":
    main()
