"""Throughput of one attention-transfer training step, at_jax against PyTorch on the same device.

One step = teacher forward (inference-mode BN, no gradient) + student forward/backward + SGD update, on
a batch already resident on the device (synthetic data, no augmentation). Warm-up calls (compilation
included) are excluded; the figure is the median of ``--repeats`` synchronised calls.

    python benchmarks/step_throughput.py --student wrn-16-1 --teacher wrn-16-2 --batch-size 128 \
        --method at --framework jax|torch|both [--compile] [--dtype float32|bfloat16] [--steps-per-call K] \
        --json

``--all`` runs a list of configurations, each in a fresh interpreter, and prints a markdown table with
the jax/torch ratios measured in that same run. torch is imported only for ``--framework torch|both``.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402

NUM_CLASSES = 10


def prepare_jax(args: argparse.Namespace) -> tuple:
    """``(call, describe)``: ``call()`` runs one synchronised call of K steps; ``describe(seconds)``
    returns the jax facts for a median call time."""
    import jax

    from benchmarks import jax_reference

    jax_step = jax_reference.make_jax_step(
        args.student, args.teacher, args.method, num_classes=NUM_CLASSES, dtype=args.dtype,
        steps_per_call=args.steps_per_call, scan_unroll=args.scan_unroll, pad=0, flip=False,
        mean=(0.5,) * 3, std=(0.25,) * 3, parallel_runs=args.parallel_runs,
        parallel_mode=args.parallel_mode)
    data, indices = jax_reference.step_data(args.batch_size, args.steps_per_call, NUM_CLASSES,
                                            parallel_runs=args.parallel_runs)
    compiled, facts = jax_reference.compile_with_costs(jax_step, data, indices)

    def describe(call_seconds: float) -> dict:
        result = {"jax_version": jax.__version__, "device": str(jax.devices()[0]),
                  "device_kind": jax.devices()[0].device_kind, "backend": jax.default_backend(),
                  "median_call_seconds": call_seconds,
                  "device_peak_bytes": jax_reference.device_peak_bytes(),
                  "xla_flags": os.environ.get("XLA_FLAGS", ""), **facts}
        if facts.get("flops_per_call"):
            result["flops_per_step"] = facts["flops_per_call"] / args.steps_per_call
            result["achieved_flops_per_second"] = facts["flops_per_call"] / call_seconds
        return result

    return (lambda: jax_step.call(data, indices, compiled)), describe


def prepare_torch(args: argparse.Namespace) -> tuple:
    """``(call, describe)`` as :func:`prepare_jax`, for the official-style PyTorch step."""
    import torch

    from benchmarks import torch_reference

    torch.manual_seed(0)
    device = torch_reference.default_device()
    step = torch_reference.make_step(args.student, args.teacher, args.method, num_classes=NUM_CLASSES,
                                     device=device, dtype=args.dtype, compile=args.compile)
    inputs, targets = torch_reference.make_batch(args.batch_size, NUM_CLASSES, device, args.dtype)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def call():
        for _ in range(args.steps_per_call):
            step(inputs, targets)
        torch_reference.synchronize(device)

    def describe(call_seconds: float) -> dict:
        return {"torch_version": torch.__version__, "torch_threads": torch.get_num_threads(),
                "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
                "backend": device.type, "median_call_seconds": call_seconds,
                "device_peak_bytes": (int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda"
                                      else None)}

    return call, describe


def measure(args: argparse.Namespace) -> tuple[dict, float]:
    """One framework: warm-up, then ``repeats`` timed calls; returns (facts, median call seconds)."""
    call, describe = (prepare_jax if args.framework == "jax" else prepare_torch)(args)
    call_seconds = common.median(common.time_calls(call, warmup=args.warmup, repeats=args.repeats))
    return describe(call_seconds), call_seconds


def measure_interleaved(args: argparse.Namespace) -> tuple[dict, float]:
    """``--framework both``: both steps in one process, timed calls alternating jax, torch, jax, ...
    so that both see the same machine load; the torch facts go under ``"torch"``."""
    jax_call, jax_describe = prepare_jax(args)
    torch_call, torch_describe = prepare_torch(args)
    common.time_calls(jax_call, warmup=args.warmup, repeats=0)
    common.time_calls(torch_call, warmup=args.warmup, repeats=0)
    jax_seconds, torch_seconds = [], []
    for _ in range(args.repeats):
        jax_seconds += common.time_calls(jax_call, warmup=0, repeats=1)
        torch_seconds += common.time_calls(torch_call, warmup=0, repeats=1)
    jax_median, torch_median = common.median(jax_seconds), common.median(torch_seconds)
    torch_facts = torch_describe(torch_median)
    torch_facts["images_per_second"] = args.batch_size * args.steps_per_call / torch_median
    torch_facts["call_seconds"] = torch_seconds
    result = {**jax_describe(jax_median), "torch": torch_facts, "call_seconds": jax_seconds,
              "ratio_jax_over_torch": torch_median / jax_median}
    return result, jax_median


def run_one(args: argparse.Namespace) -> dict:
    if args.steps_per_call < 1 or args.repeats < 1 or args.warmup < 0 or args.batch_size < 1 \
            or args.parallel_runs < 1:
        raise SystemExit("step_throughput: error: need --steps-per-call >= 1, --repeats >= 1, "
                         "--warmup >= 0, --batch-size >= 1, --parallel-runs >= 1")
    if args.parallel_runs > 1 and args.framework != "jax":
        raise SystemExit("step_throughput: error: --parallel-runs is a jax setting (torch runs are sequential: "
                         "their throughput is the single run's)")
    teacher = None if args.method == "none" else args.teacher
    runner = measure_interleaved if args.framework == "both" else measure
    specific, call_seconds = runner(args)
    step_seconds = call_seconds / args.steps_per_call
    result = {"benchmark": "step_throughput", "framework": args.framework, "student": args.student,
              "teacher": teacher, "method": args.method, "batch_size": args.batch_size, "dtype": args.dtype,
              "compile": bool(args.compile) if args.framework != "jax" else True,  # jax: always jit
              "steps_per_call": args.steps_per_call, "scan_unroll": args.scan_unroll, "repeats": args.repeats,
              "warmup": args.warmup,
              "parallel_runs": args.parallel_runs, "parallel_mode": args.parallel_mode,
              "median_step_seconds": step_seconds,
              # all runs' images: S vmapped runs against S sequential runs is this over the S = 1 figure
              "images_per_second": args.parallel_runs * args.batch_size / step_seconds,
              "host_peak_rss_bytes": common.host_peak_rss_bytes(), **common.machine_facts(), **specific}
    result["load_average"] = common.load_average()  # after the run too: the load while it ran
    return result


# ---- --all: a list of configurations, one fresh interpreter each, and a markdown table ----
def configurations(args: argparse.Namespace) -> list[dict]:
    rows = []
    for dtype in args.all_dtypes.split(","):
        for method in args.all_methods.split(","):
            rows.append({"method": method, "dtype": dtype, "framework": "jax", "steps_per_call": 1})
            if args.all_steps_per_call > 1:
                rows.append({"method": method, "dtype": dtype, "framework": "jax",
                             "steps_per_call": args.all_steps_per_call})
            if args.all_frameworks in ("both", "torch"):
                rows.append({"method": method, "dtype": dtype, "framework": "torch", "compile": False})
                if args.all_torch_compile:
                    rows.append({"method": method, "dtype": dtype, "framework": "torch", "compile": True})
    return rows


def run_all(args: argparse.Namespace) -> None:
    script = os.path.abspath(__file__)
    results = []
    for row in configurations(args):
        argv = [script, "--json", "--student", args.student, "--teacher", args.teacher, "--batch-size",
                str(args.batch_size), "--method", row["method"], "--dtype", row["dtype"], "--framework",
                row["framework"], "--repeats", str(args.repeats), "--warmup", str(args.warmup),
                "--steps-per-call", str(row.get("steps_per_call", 1))]
        if row.get("compile"):
            argv.append("--compile")
        result = common.run_json(argv)
        result.update({key: result.get(key, value) for key, value in row.items()})
        results.append(result)
        print(f"# {row}: {result.get('images_per_second', result.get('error'))}", file=sys.stderr)
    print(markdown_table(results))
    if args.json:
        import json
        print(json.dumps(results))


def markdown_table(results: list[dict]) -> str:
    """One row per configuration; ratio = images/s over torch eager's for the same method and dtype."""
    eager = {(r["method"], r["dtype"]): r.get("images_per_second") for r in results
             if r["framework"] == "torch" and not r.get("compile")}
    lines = ["| framework | method | dtype | K | img/s | ms/step | ratio vs torch eager | GFLOP/s | "
             "peak mem | load avg |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        name = r["framework"] + (" compile" if r["framework"] == "torch" and r.get("compile") else "")
        if "error" in r:
            lines.append(f"| {name} | {r['method']} | {r['dtype']} | | error: {r['error'][:80]} |||||")
            continue
        reference = eager.get((r["method"], r["dtype"]))
        ratio = f"{r['images_per_second'] / reference:.2f}x" if reference else "n/a"
        flops = r.get("achieved_flops_per_second")
        peak = r.get("device_peak_bytes") or r.get("host_peak_rss_bytes")
        cells = [name, r["method"], r["dtype"], str(r.get("steps_per_call", 1)),
                 f"{r['images_per_second']:.0f}", f"{1e3 * r['median_step_seconds']:.1f}", ratio,
                 f"{flops / 1e9:.1f}" if flops else "n/a", common.format_bytes(peak),
                 " ".join(str(v) for v in r.get("load_average", []))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--student", default="wrn-16-1")
    parser.add_argument("--teacher", default="wrn-16-2")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--method", default="at", choices=["none", "at", "kd", "at+kd", "grad_at"])
    parser.add_argument("--framework", default="jax", choices=["jax", "torch", "both"],
                        help="both: jax and torch in one process, timed calls alternating (same load); "
                             "images_per_second is jax's, torch's is under 'torch'")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the torch loss (jax: always jit)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--steps-per-call", type=int, default=1,
                        help="jax: K steps in one compiled lax.scan; torch: K eager steps per timed call")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--scan-unroll", action="store_true",
                        help="jax, K > 1: fully unrolled lax.scan instead of at_jax.training.step.make_multi_step")
    parser.add_argument("--parallel-runs", type=int, default=1,
                        help="jax: S students vmapped in one step (config.parallel_runs); images/s counts all S")
    parser.add_argument("--parallel-mode", default="auto", choices=["vmap", "unroll", "auto"],
                        help="--parallel-runs: one batched (vmapped) step, or S copies of the step in one "
                             "program; auto = unroll on CPU, vmap elsewhere (config.parallel_mode)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--all", action="store_true", help="run a list of configurations, print a table")
    parser.add_argument("--all-methods", default="none,at,kd,at+kd")
    parser.add_argument("--all-dtypes", default="float32")
    parser.add_argument("--all-frameworks", default="both", choices=["both", "jax", "torch"])
    parser.add_argument("--all-torch-compile", action="store_true")
    parser.add_argument("--all-steps-per-call", type=int, default=1)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    common.apply_xla_cpu_flags()  # before the first JAX computation
    if args.all:
        run_all(args)
        return
    common.emit(run_one(args), args.json)


if __name__ == "__main__":
    main()
