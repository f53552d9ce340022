"""Writes tests/fixtures/core.npz: PyTorch reference values for at_jax.attention / at_jax.losses.

Implements the official formulas literally (szagoruyko/attention-transfer utils.py, RepDistiller):

    at(x)         = F.normalize(x.pow(2).mean(1).view(x.size(0), -1))
    at_loss(x, y) = (at(x) - at(y)).pow(2).mean()
    distillation  = F.kl_div(log_softmax(y/T), softmax(t/T), reduction='sum') * T**2 / N * alpha
                    + F.cross_entropy(y, labels) * (1 - alpha)

plus the variants at_jax supports (p, sum/max reduce, l1/no normalisation, the paper form,
adaptive_avg_pool2d / bilinear interpolation for unequal sizes, F-ActT). Inputs are float32
NCHW tensors; references are computed in float64 and stored NHWC.

Run:  /work/venv/bin/python tests/make_fixtures_core.py
"""
from __future__ import annotations

import pathlib

import numpy as np
import torch
import torch.nn.functional as F

OUTPUT = pathlib.Path(__file__).parent / "fixtures" / "core.npz"


def attention(x, p=2.0, reduce="mean", normalize="l2"):
    powered = x.abs().pow(p)
    if reduce == "mean":
        spatial = powered.mean(1)
    elif reduce == "sum":
        spatial = powered.sum(1)
    else:
        spatial = powered.max(1)[0]
    flat = spatial.view(x.size(0), -1)
    if normalize == "l2":
        return F.normalize(flat, p=2, dim=1, eps=1e-12)
    if normalize == "l1":
        return F.normalize(flat, p=1, dim=1, eps=1e-12)
    return flat


def official_at(x):
    return F.normalize(x.pow(2).mean(1).view(x.size(0), -1))


def official_at_loss(x, y):
    return (official_at(x) - official_at(y)).pow(2).mean()


def at_loss(s, t, p=2.0, reduce="mean", normalize="l2", form="code", resize="pool"):
    size = (min(s.shape[2], t.shape[2]), min(s.shape[3], t.shape[3]))
    if resize == "pool":
        s, t = F.adaptive_avg_pool2d(s, size), F.adaptive_avg_pool2d(t, size)
    else:
        def shrink(x):
            if tuple(x.shape[2:]) == size:
                return x
            return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        s, t = shrink(s), shrink(t)
    difference = attention(s, p, reduce, normalize) - attention(t, p, reduce, normalize)
    if form == "code":
        return difference.pow(2).mean()
    return 0.5 * difference.norm(p=2, dim=1).mean()


def distillation(y, teacher_scores, labels, T, alpha):
    p = F.log_softmax(y / T, dim=1)
    q = F.softmax(teacher_scores / T, dim=1)
    l_kl = F.kl_div(p, q, reduction="sum") * (T**2) / y.shape[0]
    l_ce = F.cross_entropy(y, labels)
    return l_kl * alpha + l_ce * (1.0 - alpha), l_kl


def factt(s, t):
    size = (min(s.shape[2], t.shape[2]), min(s.shape[3], t.shape[3]))
    s, t = F.adaptive_avg_pool2d(s, size), F.adaptive_avg_pool2d(t, size)
    flat_s = F.normalize(s.reshape(s.size(0), -1))
    flat_t = F.normalize(t.reshape(t.size(0), -1))
    return (flat_s - flat_t).pow(2).mean()


def nhwc(x: torch.Tensor) -> np.ndarray:
    return x.detach().permute(0, 2, 3, 1).numpy()


def value_and_grad(fn, s, *others):
    s = s.detach().clone().requires_grad_(True)
    value = fn(s, *others)
    (gradient,) = torch.autograd.grad(value, s)
    return value.item(), nhwc(gradient)


def main() -> None:
    generator = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float32)

    out: dict[str, np.ndarray] = {}
    f64 = lambda x: x.double()  # noqa: E731

    # Attention maps: every (p, reduce, normalize) combination, one example all zeros (eps).
    x = randn(4, 3, 8, 8)
    x[1] = 0.0
    out["x"] = nhwc(x)
    for p in (1, 2, 4):
        for reduce in ("mean", "sum", "max"):
            for normalize in ("l2", "l1", "none"):
                norm = None if normalize == "none" else normalize
                out[f"map/p{p}/{reduce}/{normalize}"] = attention(f64(x), p, reduce, norm).numpy()
    out["map/official"] = official_at(f64(x)).numpy()

    # AT loss, equal sizes, different channels; student has a zero example.
    s = randn(4, 3, 8, 8)
    s[2] = 0.0
    t = randn(4, 5, 8, 8)
    out["s"], out["t"] = nhwc(s), nhwc(t)
    out["at/official"], out["at/official/grad"] = value_and_grad(official_at_loss, f64(s), f64(t))
    variants = {
        "p1_sum_l2": dict(p=1.0, reduce="sum"),
        "p4_max_l1": dict(p=4.0, reduce="max", normalize="l1"),
        "p2_mean_none": dict(normalize=None),
        "paper": dict(form="paper"),
        "paper_p4_sum": dict(p=4.0, reduce="sum", form="paper"),
    }
    for name, options in variants.items():
        out[f"at/{name}"], out[f"at/{name}/grad"] = value_and_grad(
            lambda a, b: at_loss(a, b, **options), f64(s), f64(t))

    # Unequal spatial sizes: student larger, student smaller, non-integer and non-square.
    shapes = {
        "s8_t4": ((4, 3, 8, 8), (4, 5, 4, 4)),
        "s4_t8": ((4, 3, 4, 4), (4, 5, 8, 8)),
        "s6x9_t4x3": ((4, 3, 6, 9), (4, 5, 4, 3)),
        "s8x3_t4x6": ((4, 2, 8, 3), (4, 5, 4, 6)),
    }
    for case, (shape_s, shape_t) in shapes.items():
        s_case, t_case = randn(*shape_s), randn(*shape_t)
        out[f"resize/{case}/s"], out[f"resize/{case}/t"] = nhwc(s_case), nhwc(t_case)
        for resize in ("pool", "interpolate"):
            key = f"resize/{case}/{resize}"
            out[key], out[f"{key}/grad"] = value_and_grad(
                lambda a, b: at_loss(a, b, resize=resize), f64(s_case), f64(t_case))
    pooled = F.adaptive_avg_pool2d(f64(torch.from_numpy(out["resize/s6x9_t4x3/s"]).permute(0, 3, 1, 2)), (4, 3))
    out["pool/s6x9_to_4x3"] = nhwc(pooled)
    resized = F.interpolate(f64(torch.from_numpy(out["resize/s6x9_t4x3/s"]).permute(0, 3, 1, 2)),
                            size=(4, 3), mode="bilinear", align_corners=False)
    out["interpolate/s6x9_to_4x3"] = nhwc(resized)

    # Logits: cross-entropy and KD.
    logits_s, logits_t = randn(6, 10) * 3.0, randn(6, 10) * 3.0
    labels = torch.randint(0, 10, (6,), generator=generator)
    out["logits/s"], out["logits/t"], out["labels"] = logits_s.numpy(), logits_t.numpy(), labels.numpy()
    out["ce"] = F.cross_entropy(f64(logits_s), labels).item()
    for T, alpha in ((4.0, 0.9), (1.0, 0.5), (2.5, 1.0)):
        key = f"kd/T{T}/a{alpha}"
        ls = f64(logits_s).requires_grad_(True)
        total, kl = distillation(ls, f64(logits_t), labels, T, alpha)
        (gradient,) = torch.autograd.grad(total, ls)
        out[key], out[f"{key}/kl"], out[f"{key}/grad"] = total.item(), kl.item(), gradient.numpy()

    # F-ActT with equal channels, student larger spatially.
    fs, ft = randn(4, 5, 8, 8), randn(4, 5, 4, 4)
    out["factt/s"], out["factt/t"] = nhwc(fs), nhwc(ft)
    out["factt"], out["factt/grad"] = value_and_grad(factt, f64(fs), f64(ft))

    arrays = {key: np.asarray(value) for key, value in out.items()}
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUTPUT, **arrays)
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size} bytes, {len(arrays)} arrays)")


if __name__ == "__main__":
    main()
