"""Writes tests/fixtures/wrn.npz: a WRN-10-1 forward pass by the official PyTorch definition.

The network is the functional WRN of szagoruyko/attention-transfer ``cifar.py`` (``resnet``),
ported to current PyTorch (no ``Variable``, Python 3 division) with the math unchanged.
Weights are random with non-trivial BN parameters and running statistics. Every weight and the
input are rounded to float16-representable values and stored as float16 (exact, and half the
size); the forward runs in float64 on those values, so the stored outputs are the exact answer
for the stored weights. Saved:

  ``state/<official key>``      weights and BN statistics (OIHW convs, fc.weight (out, in))
  ``input``                     (2, 32, 32, 3) NHWC
  ``{eval,train}/logits``       (2, 10)
  ``{eval,train}/group{0,1,2}`` NHWC group outputs
  ``train/stats/<key>``         running mean/var after one train-mode forward (momentum 0.1)

Run: /work/venv/bin/python tests/make_fixtures_wrn.py
"""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

DEPTH, WIDTH, NUM_CLASSES, BATCH = 10, 1, 10, 2
OUT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "wrn.npz")


# ---- official definition (attention-transfer cifar.py / utils.py), initialisers made random ----
def conv_params(ni, no, k=1):
    return torch.randn(no, ni, k, k) * np.sqrt(2.0 / (ni * k * k))  # kaiming normal, fan-in


def linear_params(ni, no):
    return {"weight": torch.randn(no, ni) * np.sqrt(2.0 / ni), "bias": 0.1 * torch.randn(no)}


def bnparams(n):
    return {"weight": torch.rand(n), "bias": 0.1 * torch.randn(n)}


def bnstats(n):  # non-trivial running statistics so that eval mode tests them
    return {"running_mean": 0.2 * torch.randn(n), "running_var": 0.5 + torch.rand(n)}


def flatten(tree, prefix=""):
    flat = {}
    for key, value in tree.items():
        if value is None:
            continue
        if isinstance(value, dict):
            flat.update(flatten(value, prefix + key + "."))
        else:
            flat[prefix + key] = value
    return flat


def resnet(depth, width, num_classes):
    assert (depth - 4) % 6 == 0, "depth should be 6n+4"
    n = (depth - 4) // 6
    widths = np.floor(np.asarray([16.0, 32.0, 64.0]) * width).astype(int)

    def gen_block_params(ni, no):
        return {
            "conv0": conv_params(ni, no, 3),
            "conv1": conv_params(no, no, 3),
            "bn0": bnparams(ni),
            "bn1": bnparams(no),
            "convdim": conv_params(ni, no, 1) if ni != no else None,
        }

    def gen_group_params(ni, no, count):
        return {"block%d" % i: gen_block_params(ni if i == 0 else no, no) for i in range(count)}

    def gen_group_stats(ni, no, count):
        return {"block%d" % i: {"bn0": bnstats(ni if i == 0 else no), "bn1": bnstats(no)}
                for i in range(count)}

    params = flatten({
        "conv0": conv_params(3, 16, 3),
        "group0": gen_group_params(16, widths[0], n),
        "group1": gen_group_params(widths[0], widths[1], n),
        "group2": gen_group_params(widths[1], widths[2], n),
        "bn": bnparams(widths[2]),
        "fc": linear_params(widths[2], num_classes),
    })
    stats = flatten({
        "group0": gen_group_stats(16, widths[0], n),
        "group1": gen_group_stats(widths[0], widths[1], n),
        "group2": gen_group_stats(widths[1], widths[2], n),
        "bn": bnstats(widths[2]),
    })

    def activation(x, params, stats, base, mode):
        return F.relu(F.batch_norm(x, weight=params[base + ".weight"], bias=params[base + ".bias"],
                                   running_mean=stats[base + ".running_mean"],
                                   running_var=stats[base + ".running_var"],
                                   training=mode, momentum=0.1, eps=1e-5))

    def block(x, params, stats, base, mode, stride):
        o1 = activation(x, params, stats, base + ".bn0", mode)
        y = F.conv2d(o1, params[base + ".conv0"], stride=stride, padding=1)
        o2 = activation(y, params, stats, base + ".bn1", mode)
        z = F.conv2d(o2, params[base + ".conv1"], stride=1, padding=1)
        if base + ".convdim" in params:
            return z + F.conv2d(o1, params[base + ".convdim"], stride=stride)
        else:
            return z + x

    def group(o, params, stats, base, mode, stride):
        for i in range(n):
            o = block(o, params, stats, "%s.block%d" % (base, i), mode, stride if i == 0 else 1)
        return o

    def f(input, params, stats, mode, prefix=""):
        x = F.conv2d(input, params[prefix + "conv0"], padding=1)
        g0 = group(x, params, stats, prefix + "group0", mode, 1)
        g1 = group(g0, params, stats, prefix + "group1", mode, 2)
        g2 = group(g1, params, stats, prefix + "group2", mode, 2)
        o = activation(g2, params, stats, prefix + "bn", mode)
        o = F.avg_pool2d(o, 8, 1, 0)
        o = o.view(o.size(0), -1)
        o = F.linear(o, params[prefix + "fc.weight"], params[prefix + "fc.bias"])
        return o, [g0, g1, g2]

    return f, params, stats


# ---- fixture ----
def to_half_grid(tensor: torch.Tensor) -> torch.Tensor:
    """Rounds to float16-representable values, kept in float64 for the reference forward."""
    return tensor.to(torch.float16).to(torch.float64)


def nhwc(tensor: torch.Tensor) -> np.ndarray:
    return tensor.permute(0, 2, 3, 1).numpy().astype(np.float32)


def main() -> None:
    torch.manual_seed(0)
    f, params, stats = resnet(DEPTH, WIDTH, NUM_CLASSES)
    params = {k: to_half_grid(v) for k, v in params.items()}
    stats = {k: to_half_grid(v) for k, v in stats.items()}
    image = to_half_grid(torch.randn(BATCH, 3, 32, 32))

    arrays = {"input": image.permute(0, 2, 3, 1).numpy().astype(np.float16)}
    for key, value in {**params, **stats}.items():
        arrays[f"state/{key}"] = value.numpy().astype(np.float16)

    with torch.no_grad():
        logits, groups = f(image, params, stats, False)
        arrays["eval/logits"] = logits.numpy().astype(np.float32)
        for i, g in enumerate(groups):
            arrays[f"eval/group{i}"] = nhwc(g)

        train_stats = {k: v.clone() for k, v in stats.items()}
        logits, groups = f(image, params, train_stats, True)  # updates train_stats in place
        arrays["train/logits"] = logits.numpy().astype(np.float32)
        for i, g in enumerate(groups):
            arrays[f"train/group{i}"] = nhwc(g)
        for key, value in train_stats.items():
            arrays[f"train/stats/{key}"] = value.numpy().astype(np.float32)

    os.makedirs(os.path.dirname(OUT_PATH), exist_ok=True)
    np.savez_compressed(OUT_PATH, **arrays)


if __name__ == "__main__":
    main()
