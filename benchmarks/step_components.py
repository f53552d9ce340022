"""Where a step's time goes: the teacher's inference forward and the student's forward+backward, alone.

    python benchmarks/step_components.py --framework jax|torch [--student wrn-16-1] [--teacher wrn-16-2] \
        [--batch-size 128] [--repeats 5]

jax: the at_jax model (``models.create``) jitted, eval-mode forward and train-mode cross-entropy gradient;
torch: the official functional WRN (``benchmarks/torch_reference.py``) under ``no_grad`` / with
``backward()``. Seconds, median of ``--repeats`` calls after 2 warm-up calls.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402


def jax_parts(name: str, batch: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from at_jax import models
    from at_jax.losses import cross_entropy

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((batch, 32, 32, 3), np.float32))
    y = jnp.asarray(rng.integers(0, 10, batch))
    model = models.create(name, 10)
    variables = model.init(jax.random.PRNGKey(0), x[:1], train=False)
    forward = jax.jit(lambda v, x: model.apply(v, x, train=False)[0])

    def loss(params, x):
        logits = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, x, train=True,
                             mutable=["batch_stats"])[0][0]
        return cross_entropy(logits, y)

    gradient = jax.jit(jax.grad(loss))
    return {"eval_forward": lambda: jax.block_until_ready(forward(variables, x)),
            "forward_backward": lambda: jax.block_until_ready(gradient(variables["params"], x))}


def torch_parts(name: str, batch: int) -> dict:
    import torch
    import torch.nn.functional as F

    from benchmarks import torch_reference

    depth, width = torch_reference.parse_wrn(name)
    network, params, stats = torch_reference.resnet(depth, width, 10)
    params = {key: value.requires_grad_() for key, value in params.items()}
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))

    def eval_forward():
        with torch.no_grad():
            network(x, params, stats, False)

    def forward_backward():
        F.cross_entropy(network(x, params, stats, True)[0], y).backward()

    return {"eval_forward": eval_forward, "forward_backward": forward_backward}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--framework", default="jax", choices=["jax", "torch"])
    parser.add_argument("--student", default="wrn-16-1")
    parser.add_argument("--teacher", default="wrn-16-2")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    common.apply_xla_cpu_flags()  # before the first JAX computation
    parts = jax_parts if args.framework == "jax" else torch_parts
    result = {"framework": args.framework, "batch_size": args.batch_size, "load_average": None}
    # the teacher runs forward only (frozen), the student forward and backward
    for role, name, part in (("teacher", args.teacher, "eval_forward"), ("student", args.student, "forward_backward")):
        call = parts(name, args.batch_size)[part]
        result[f"{role}_{part}_seconds"] = common.median(common.time_calls(call, warmup=2, repeats=args.repeats))
    result["load_average"] = common.load_average()
    print(result, flush=True)
    return result


if __name__ == "__main__":
    main()
