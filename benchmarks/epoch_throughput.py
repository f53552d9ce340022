"""Throughput of a whole CIFAR-shaped training epoch with augmentation: at_jax against PyTorch.

Synthetic uint8 images of CIFAR shape (``--num-train`` of them, 50000 by default; smaller for CPU).
Augmentation is reflect-pad 4, random 32x32 crop, horizontal flip, mean/std normalisation.

* ``--framework jax``: the at_jax path. The uint8 training set is resident on the device; each call runs
  ``--steps-per-call`` K train steps in one ``lax.scan`` with the augmentation inside the compiled step;
  the host only sends the epoch's shuffled example indices (as ``at_jax.training`` does).
* ``--framework torch``: the official-style pipeline. A ``torch.utils.data.DataLoader`` with ``--workers``
  worker processes over a Dataset of uint8 HWC arrays that pads, crops, flips and normalises each image
  on the host (numpy; torchvision is not needed), batches moved to the device, one eager (or
  ``--compile``) step per batch.

Warm-up (compilation, worker start) is excluded: a few calls are run first, then ``--epochs`` whole
epochs are timed (drop-remainder: ``num_train // batch_size`` steps each); the figure is the median.

    python benchmarks/epoch_throughput.py --framework jax|torch --num-train 5120 --batch-size 128 --json
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402

NUM_CLASSES, PAD = 10, 4


def synthetic_train_set(num_train: int, seed: int = 0):
    """The at_jax synthetic dataset (uint8 NHWC noise, CIFAR shape); only its train split is used."""
    from at_jax.data import load_dataset
    return load_dataset("synthetic", seed=seed, num_train=num_train, num_test=1, image_size=32)


def run_jax(args: argparse.Namespace, dataset) -> tuple[dict, list[float]]:
    import jax
    import jax.numpy as jnp

    from benchmarks import jax_reference

    steps_per_epoch = len(dataset.train_labels) // args.batch_size
    steps_per_call = min(args.steps_per_call, steps_per_epoch)
    jax_step = jax_reference.make_jax_step(
        args.student, args.teacher, args.method, num_classes=NUM_CLASSES, dtype=args.dtype,
        steps_per_call=steps_per_call, scan_unroll=args.scan_unroll, pad=dataset.pad, flip=dataset.flip,
        mean=dataset.mean, std=dataset.std,
        total_steps=(args.epochs + 1) * steps_per_epoch)
    data = jax.device_put({"train_images": dataset.train_images,
                           "train_labels": dataset.train_labels.astype(np.int32)})
    rng = np.random.default_rng(0)

    def chunks_of_epoch():
        """The epoch's index array cut into calls: whole chunks of K steps, then the remainder."""
        order = rng.permutation(len(dataset.train_labels))[:steps_per_epoch * args.batch_size]
        steps = order.reshape(steps_per_epoch, args.batch_size).astype(np.int32)
        for start in range(0, steps_per_epoch, steps_per_call):
            chunk = steps[start:start + steps_per_call]
            yield chunk[0] if steps_per_call == 1 else chunk

    def run_call(indices):
        if steps_per_call > 1 and indices.shape[0] != steps_per_call:
            jax_step.call(data, jnp.asarray(indices))  # the remainder chunk: its own compiled shape
        else:
            jax_step.call(data, jnp.asarray(indices), compiled)

    first = next(chunks_of_epoch())
    compiled, facts = jax_reference.compile_with_costs(jax_step, data, jnp.asarray(first))
    warm_chunks = list(chunks_of_epoch())
    for indices in warm_chunks[:max(1, args.warmup)] + ([warm_chunks[-1]] if len(warm_chunks) > 1 else []):
        run_call(indices)  # compiles the remainder shape too, outside the timing
    epoch_seconds = common.time_calls(lambda: [run_call(i) for i in chunks_of_epoch()], warmup=0,
                                      repeats=args.epochs)
    result = {"jax_version": jax.__version__, "device": str(jax.devices()[0]),
              "backend": jax.default_backend(), "steps_per_call": steps_per_call,
              "device_peak_bytes": jax_reference.device_peak_bytes(), **facts}
    if facts.get("flops_per_call"):
        step_flops = facts["flops_per_call"] / steps_per_call
        result["flops_per_step"] = step_flops
        result["achieved_flops_per_second"] = step_flops * steps_per_epoch / common.median(epoch_seconds)
    return result, epoch_seconds


class AugmentedImages:
    """A map-style Dataset over uint8 HWC images: reflect-pad 4, random crop, random flip, normalise.

    Returns ``(float32 CHW tensor, int64 label)`` as the official torchvision pipeline
    (``Pad(4, reflect)``, ``RandomHorizontalFlip``, ``RandomCrop(32)``, ``ToTensor``, ``Normalize``).
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, mean, std, pad: int = PAD):
        self.images, self.labels, self.pad = images, labels, pad
        self.mean = np.asarray(mean, np.float32).reshape(3, 1, 1)
        self.std = np.asarray(std, np.float32).reshape(3, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        import torch
        image = self.images[index]
        height, width = image.shape[:2]
        padded = np.pad(image, ((self.pad, self.pad), (self.pad, self.pad), (0, 0)), mode="reflect")
        top, left = np.random.randint(0, 2 * self.pad + 1, size=2)
        crop = padded[top:top + height, left:left + width]
        if np.random.rand() < 0.5:
            crop = crop[:, ::-1]
        chw = crop.transpose(2, 0, 1).astype(np.float32) / 255.0
        return torch.from_numpy((chw - self.mean) / self.std), int(self.labels[index])


def _seed_worker(worker_id: int) -> None:
    import torch
    np.random.seed((torch.initial_seed() + worker_id) % 2**32)


def run_torch(args: argparse.Namespace, dataset) -> tuple[dict, list[float]]:
    import torch

    from benchmarks import torch_reference

    torch.manual_seed(0)
    device = torch_reference.default_device()
    step = torch_reference.make_step(args.student, args.teacher, args.method, num_classes=NUM_CLASSES,
                                     device=device, dtype=args.dtype, compile=args.compile)
    loader = torch.utils.data.DataLoader(
        AugmentedImages(dataset.train_images, dataset.train_labels, dataset.mean, dataset.std),
        batch_size=args.batch_size, shuffle=True, drop_last=True, num_workers=args.workers,
        pin_memory=device.type == "cuda", persistent_workers=args.workers > 0,
        worker_init_fn=_seed_worker)
    memory_format = torch.channels_last if args.dtype == "bfloat16" else torch.contiguous_format

    def train_on(inputs, targets):
        inputs = inputs.to(device, non_blocking=True).contiguous(memory_format=memory_format)
        step(inputs, targets.to(device, non_blocking=True))

    for index, (inputs, targets) in enumerate(loader):  # warm-up: workers started, compile done
        train_on(inputs, targets)
        if index + 1 >= max(1, args.warmup):
            break
    torch_reference.synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def epoch():
        for inputs, targets in loader:
            train_on(inputs, targets)
        torch_reference.synchronize(device)

    epoch_seconds = common.time_calls(epoch, warmup=0, repeats=args.epochs)
    result = {"torch_version": torch.__version__, "torch_threads": torch.get_num_threads(),
              "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
              "backend": device.type, "workers": args.workers,
              "device_peak_bytes": (int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda"
                                    else None)}
    return result, epoch_seconds


def run(args: argparse.Namespace) -> dict:
    if args.batch_size < 1 or args.num_train < args.batch_size or args.epochs < 1 or args.steps_per_call < 1:
        raise SystemExit("epoch_throughput: error: need --batch-size >= 1, --num-train >= --batch-size, "
                         "--epochs >= 1, --steps-per-call >= 1")
    dataset = synthetic_train_set(args.num_train)
    runner = run_jax if args.framework == "jax" else run_torch
    specific, epoch_seconds = runner(args, dataset)
    steps_per_epoch = args.num_train // args.batch_size
    seconds = common.median(epoch_seconds)
    result = {"benchmark": "epoch_throughput", "framework": args.framework, "student": args.student,
              "teacher": None if args.method == "none" else args.teacher, "method": args.method,
              "batch_size": args.batch_size, "dtype": args.dtype, "num_train": args.num_train,
              "compile": bool(args.compile) if args.framework == "torch" else True,
              "steps_per_epoch": steps_per_epoch, "scan_unroll": args.scan_unroll, "epochs": args.epochs,
              "warmup": args.warmup,
              "epoch_seconds": epoch_seconds, "median_epoch_seconds": seconds,
              "median_step_seconds": seconds / steps_per_epoch,
              "images_per_second": steps_per_epoch * args.batch_size / seconds,
              "cifar_epoch_seconds_estimate": 50000 // args.batch_size * seconds / steps_per_epoch,
              "host_peak_rss_bytes": common.host_peak_rss_bytes(), **common.machine_facts(), **specific}
    result["load_average"] = common.load_average()
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--student", default="wrn-16-1")
    parser.add_argument("--teacher", default="wrn-16-2")
    parser.add_argument("--method", default="at", choices=["none", "at", "kd", "at+kd", "grad_at"])
    parser.add_argument("--framework", default="jax", choices=["jax", "torch"])
    parser.add_argument("--compile", action="store_true", help="torch.compile the torch loss")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--num-train", type=int, default=50000)
    parser.add_argument("--steps-per-call", type=int, default=10, help="jax: train steps per compiled call")
    parser.add_argument("--workers", type=int, default=2, help="torch: DataLoader worker processes")
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls (jax) / batches (torch) first")
    parser.add_argument("--scan-unroll", action="store_true",
                        help="jax, K > 1: fully unrolled lax.scan instead of at_jax.training.step.make_multi_step")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    common.apply_xla_cpu_flags()  # before the first JAX computation
    common.emit(run(args), args.json)


if __name__ == "__main__":
    main()
