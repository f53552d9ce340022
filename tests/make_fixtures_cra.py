"""Writes tests/fixtures/cra.npz: PyTorch references for Channel Reassessment Attention.

Saved (NHWC where spatial; inputs and weights rounded to float16-representable values, stored as
float16; outputs computed in float64 by PyTorch and stored as float32):

  ``pool/{name}/input`` (2, H, W, 3), ``pool/{name}/output`` (2, k, k, 3)
      ``F.adaptive_avg_pool2d`` for (H, W, k) in POOL_CASES: sizes not divisible by k, and one
      smaller than k (bins repeat rows).
  ``block/{name}/{input,weight,bias,output}``
      the CRA module y * sigmoid(depthwise_conv_kxk(adaptive_avg_pool(y, k)) + b): weight (C, 1, k, k)
      as PyTorch stores it, for (C, H, W, k) in BLOCK_CASES.
  ``resblock/*``
      a torchvision-style BasicBlock (stride 2, conv-BN shortcut) in eval mode with CRA (k = 4) on the
      residual branch after bn2, before the addition: weights under ``resblock/state/<name>``.

Run: /work/venv/bin/python tests/make_fixtures_cra.py
"""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

OUT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "cra.npz")
POOL_CASES = {"7x7_to_4": (7, 7, 4), "10x10_to_7": (10, 10, 7), "15x9_to_4": (15, 9, 4),
              "2x3_to_4": (2, 3, 4), "8x8_to_4": (8, 8, 4)}
BLOCK_CASES = {"c6_10x9_k4": (6, 10, 9, 4), "c5_14x14_k7": (5, 14, 14, 7), "c4_3x3_k4": (4, 3, 3, 4)}


def half(array: np.ndarray) -> np.ndarray:
    """Rounds to float16-representable values (exact when stored as float16)."""
    return np.asarray(array, np.float16).astype(np.float64)


def nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x.transpose(0, 3, 1, 2).copy())


def nhwc(x: torch.Tensor) -> np.ndarray:
    return x.detach().numpy().transpose(0, 2, 3, 1)


def cra(y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, grid: int) -> torch.Tensor:
    pooled = F.adaptive_avg_pool2d(y, grid)
    gate = torch.sigmoid(F.conv2d(pooled, weight, bias, groups=y.shape[1]))
    return y * gate


def batch_norm_eval(x: torch.Tensor, state: dict, prefix: str) -> torch.Tensor:
    tensor = lambda key: torch.from_numpy(state[f"{prefix}.{key}"])  # noqa: E731
    return F.batch_norm(x, tensor("running_mean"), tensor("running_var"), tensor("weight"), tensor("bias"),
                        training=False, eps=1e-5)


def main() -> None:
    rng = np.random.default_rng(3)
    out: dict[str, np.ndarray] = {}
    for name, (height, width, grid) in POOL_CASES.items():
        x = half(rng.normal(size=(2, height, width, 3)))
        out[f"pool/{name}/input"] = x.astype(np.float16)
        out[f"pool/{name}/output"] = nhwc(F.adaptive_avg_pool2d(nchw(x), grid)).astype(np.float32)

    for name, (channels, height, width, grid) in BLOCK_CASES.items():
        y = half(rng.normal(size=(2, height, width, channels)))
        weight = half(rng.normal(0.0, 1.0, size=(channels, 1, grid, grid)))
        bias = half(rng.normal(0.0, 0.5, size=(channels,)))
        result = cra(nchw(y), torch.from_numpy(weight), torch.from_numpy(bias), grid)
        out.update({f"block/{name}/input": y.astype(np.float16),
                    f"block/{name}/weight": weight.astype(np.float16),
                    f"block/{name}/bias": bias.astype(np.float16),
                    f"block/{name}/output": nhwc(result).astype(np.float32)})

    # torchvision BasicBlock(4 -> 8, stride 2, downsample conv1x1 + BN) with CRA after bn2.
    in_channels, channels, grid = 4, 8, 4
    state = {}
    for conv, shape in (("conv1", (channels, in_channels, 3, 3)), ("conv2", (channels, channels, 3, 3)),
                        ("downsample.0", (channels, in_channels, 1, 1))):
        state[f"{conv}.weight"] = half(rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[1:])), size=shape))
    for bn in ("bn1", "bn2", "downsample.1"):
        state[f"{bn}.weight"] = half(rng.uniform(0.5, 1.5, channels))
        state[f"{bn}.bias"] = half(rng.normal(0.0, 0.1, channels))
        state[f"{bn}.running_mean"] = half(rng.normal(0.0, 0.1, channels))
        state[f"{bn}.running_var"] = half(rng.uniform(0.5, 1.5, channels))
    state["cra.weight"] = half(rng.normal(0.0, 1.0, size=(channels, 1, grid, grid)))
    state["cra.bias"] = half(rng.normal(0.0, 0.5, size=(channels,)))
    x = half(rng.normal(size=(2, 18, 18, in_channels)))
    t = {key: torch.from_numpy(value) for key, value in state.items()}
    inputs = nchw(x)
    branch = F.relu(batch_norm_eval(F.conv2d(inputs, t["conv1.weight"], stride=2, padding=1), state, "bn1"))
    branch = batch_norm_eval(F.conv2d(branch, t["conv2.weight"], padding=1), state, "bn2")
    branch = cra(branch, t["cra.weight"], t["cra.bias"], grid)
    shortcut = batch_norm_eval(F.conv2d(inputs, t["downsample.0.weight"], stride=2), state, "downsample.1")
    result = F.relu(branch + shortcut)
    out["resblock/input"] = x.astype(np.float16)
    out["resblock/output"] = nhwc(result).astype(np.float32)
    for key, value in state.items():
        out[f"resblock/state/{key}"] = value.astype(np.float16)

    os.makedirs(os.path.dirname(OUT_PATH), exist_ok=True)
    np.savez_compressed(OUT_PATH, **out)
    print(f"wrote {OUT_PATH} ({os.path.getsize(OUT_PATH)} bytes)")


if __name__ == "__main__":
    torch.set_default_dtype(torch.float64)
    main()
