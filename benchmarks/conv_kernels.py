"""Per-convolution times of the WRN-16-1 / WRN-16-2 shapes: forward, input gradient, weight gradient.

    python benchmarks/conv_kernels.py --framework jax|torch [--batch-size 128] [--alternatives] [--json]

jax: ``lax.conv_general_dilated`` (NHWC/HWIO) and its VJPs, each jitted, under whatever ``XLA_FLAGS`` the
process has (``main`` applies the at_jax entry points' XLA:CPU setting; ``AT_JAX_XLA_CPU_FLAGS=0`` leaves XLA's default);
``--alternatives`` also times two hand-written weight gradients (nine shifted ``dot_general`` s, im2col + one
matmul). torch: ``F.conv2d`` and ``torch.nn.grad.conv2d_input`` / ``conv2d_weight`` (NCHW). Milliseconds,
median of ``--repeats`` synchronised calls after 2 warm-up calls. This is the table of BENCHMARKS.md's
"CPU convolution kernels".
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402

#: (spatial size, in channels, out channels, kernel, stride) of the convolutions in the two WRNs.
SHAPES = ((32, 3, 16, 3, 1), (32, 16, 16, 3, 1), (32, 16, 32, 3, 2), (16, 32, 32, 3, 1), (32, 16, 32, 1, 2),
          (16, 32, 64, 3, 2), (8, 64, 64, 3, 1), (16, 32, 64, 1, 2), (32, 32, 32, 3, 1), (16, 64, 64, 3, 1),
          (8, 128, 128, 3, 1), (16, 64, 128, 3, 2))


def milliseconds(call, repeats: int) -> float:
    return 1e3 * common.median(common.time_calls(call, warmup=2, repeats=repeats))


def jax_calls(batch: int, size: int, cin: int, cout: int, kernel: int, stride: int, alternatives: bool) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax import lax

    pad = (kernel - 1) // 2
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((batch, size, size, cin), np.float32))
    w = jnp.asarray(rng.standard_normal((kernel, kernel, cin, cout), np.float32))
    conv = lambda x, w: lax.conv_general_dilated(x, w, (stride, stride), ((pad, pad), (pad, pad)),
                                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
    g = jnp.asarray(rng.standard_normal(conv(x, w).shape, np.float32))
    out_size = g.shape[1]

    def shifted(padded):
        return [padded[:, i:i + stride * (out_size - 1) + 1:stride, j:j + stride * (out_size - 1) + 1:stride, :]
                for i in range(kernel) for j in range(kernel)]

    def weight_grad_dots(x, g):
        padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        parts = [lax.dot_general(part, g, (((0, 1, 2), (0, 1, 2)), ((), ()))) for part in shifted(padded)]
        return jnp.stack(parts).reshape(kernel, kernel, cin, cout)

    def weight_grad_im2col(x, g):
        padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        patches = jnp.concatenate(shifted(padded), -1).reshape(-1, kernel * kernel * cin)
        return (patches.T @ g.reshape(-1, cout)).reshape(kernel, kernel, cin, cout)

    functions = {"forward": (jax.jit(conv), (x, w)),
                 "input_grad": (jax.jit(lambda w, g: jax.vjp(lambda x: conv(x, w), x)[1](g)[0]), (w, g)),
                 "weight_grad": (jax.jit(lambda x, g: jax.vjp(lambda w: conv(x, w), w)[1](g)[0]), (x, g))}
    if alternatives:
        functions["weight_grad_dots"] = (jax.jit(weight_grad_dots), (x, g))
        functions["weight_grad_im2col"] = (jax.jit(weight_grad_im2col), (x, g))
    return {name: (lambda f=f, a=a: jax.block_until_ready(f(*a))) for name, (f, a) in functions.items()}


def torch_calls(batch: int, size: int, cin: int, cout: int, kernel: int, stride: int, alternatives: bool) -> dict:
    import torch
    import torch.nn.functional as F

    pad = (kernel - 1) // 2
    x, w = torch.randn(batch, cin, size, size), torch.randn(cout, cin, kernel, kernel)
    g = torch.randn_like(F.conv2d(x, w, stride=stride, padding=pad))
    return {"forward": lambda: F.conv2d(x, w, stride=stride, padding=pad),
            "input_grad": lambda: torch.nn.grad.conv2d_input(x.shape, w, g, stride=stride, padding=pad),
            "weight_grad": lambda: torch.nn.grad.conv2d_weight(x, w.shape, g, stride=stride, padding=pad)}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--framework", default="jax", choices=["jax", "torch"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--alternatives", action="store_true", help="jax: also hand-written weight gradients")
    parser.add_argument("--first", type=int, default=len(SHAPES), help="only the first N shapes")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    common.apply_xla_cpu_flags()  # before the first JAX computation
    make = jax_calls if args.framework == "jax" else torch_calls
    rows = []
    for size, cin, cout, kernel, stride in SHAPES[:args.first]:
        calls = make(args.batch_size, size, cin, cout, kernel, stride, args.alternatives)
        row = {"conv": f"H{size} {cin}->{cout} k{kernel} s{stride}",
               **{f"{name}_ms": milliseconds(call, args.repeats) for name, call in calls.items()}}
        rows.append(row)
        print(row if args.json else " ".join(f"{k}={v:.1f}" if isinstance(v, float) else v for k, v in row.items()),
              flush=True)
    return rows


if __name__ == "__main__":
    main()
