"""The "compiled for TPU on a CPU machine" table of BENCHMARKS.md: each row's config compiled for v5e, v5p and
v6e slices by ``python -m at_jax.compile_for --json`` (one process per cell), one JSON line per cell.

    python benchmarks/compile_table.py --out=compile_table.jsonl [--rows=imagenet,...] [--sizes=1,8,256]
        [--generations=v5e,v5p,v6e] [--max-batch-at=8] [--batch-granularity=8]
    python benchmarks/compile_table.py --out=compile_table.jsonl --markdown     # the table from the lines

Every figure is XLA's count for the compiled program (memory per chip, FLOPs and bytes per image), not a speed
measurement. The batch per chip is fixed (the config's global batch / 8, its 8-chip split); the global batch
grows with the slice, as on a pod. ``--max-batch-at=N`` runs ``--find-max-batch`` on the N-chip slice of each
generation. Cells already in ``--out`` are not compiled again (the script resumes).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time

from common import REPO_ROOT

from at_jax.planning.topology import libtpu_version

#: label -> (config, overrides, the config's global batch).
ROWS = {
    "wrn16-2_to_16-1": ("configs/cifar10.py:student=wrn-16-1,teacher=wrn-16-2,method=at", {}, 128),
    "wrn40-2_to_16-2": ("configs/cifar10.py:student=wrn-16-2,teacher=wrn-40-2,method=at", {}, 128),
    "imagenet_r34_to_r18": ("configs/imagenet.py:method=at", {}, 256),
    "cra_resnet50": ("configs/cra_imagenet.py:model=resnet50-cra", {}, 256),
    "sweep5_wrn16-1": ("configs/cifar10.py:student=wrn-16-1,teacher=wrn-16-2,method=at",
                       {"parallel_runs": 5, "parallel_sweep": "at_beta",
                        "parallel_values": "(100.,300.,1000.,3000.,10000.)"}, 128),
}
#: generation -> chips -> topology name.
TOPOLOGIES = {
    "v5e": {1: "v5e:1x1", 8: "v5e:2x4", 256: "v5e:16x16"},
    "v5p": {1: "v5p:1x1x1", 8: "v5p:2x2x2", 256: "v5p:4x8x8"},
    "v6e": {1: "v6e:1x1", 8: "v6e:2x4", 256: "v6e:16x16"},
}


def compile_cell(row: str, topology: str, chips: int, find_max_batch: bool, granularity: int = 8) -> dict:
    """One ``compile_for --json`` run: its report (or its one-line error) and wall time; ``--find-max-batch``
    tries multiples of ``granularity`` per chip."""
    config, overrides, batch = ROWS[row]
    per_chip = batch // 8
    args = [f"--topology={topology}", f"--config={config}", f"--config.batch_size={per_chip * chips}", "--json",
            *[f"--config.{key}={value}" for key, value in overrides.items()]]
    if find_max_batch:
        args += ["--find-max-batch", f"--batch-granularity={granularity}"]
    start = time.time()
    result = subprocess.run([sys.executable, "-m", "at_jax.compile_for", *args], capture_output=True, text=True,
                            cwd=REPO_ROOT)
    cell = {"row": row, "topology": topology, "chips": chips, "batch_per_chip": per_chip, "compiler": libtpu_version(),
            "batch_granularity": granularity,
            "wall_seconds": round(time.time() - start, 1), "returncode": result.returncode,
            "load_average": os.getloadavg()[0]}
    try:
        cell["report"] = json.loads(result.stdout)
    except json.JSONDecodeError:
        lines = result.stderr.strip().splitlines() or ["no output"]
        cell["error"] = next((line for line in lines if line.startswith("at_jax: error:")), lines[-1])
        cell["stderr_tail"] = lines[-40:]
    return cell


def gib(count: float) -> str:
    return f"{count / 1024 ** 3:.2f}"


def largest_batch(cell: dict, found: dict) -> str:
    """The searched batch, with the step it was searched in where that is not 8; empty where not searched."""
    if "per_chip" not in found:
        return ""
    granularity = cell.get("batch_granularity", 8)
    text = f"{found['per_chip']}" + (f" (multiples of {granularity})" if granularity != 8 else "")
    failures = found.get("compiler_failures") or {}
    untried = found.get("untried") or []
    return (text + (f"; {untried[0]}–{untried[1]} untried" if untried else "")
            + (f"; the compiler failed from {min(failures, key=int)} on" if failures else ""))


def markdown(cells: list[dict]) -> str:
    """The table: one line per row and topology."""
    lines = ["| run | topology (chips) | compiler | batch per chip | fits: GiB per chip needed / held | "
             "GFLOP per image | MiB accessed per image | largest batch per chip | compile s (train + eval; load) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for cell in cells:
        report = cell.get("report")
        if report is None:
            message = cell.get("error", "")
            crash = re.search(r"crashed \((SIG[A-Z]+)\)", message)
            error = (f"libtpu crashed ({crash.group(1)})" if crash else f"libtpu crashed (signal {-cell['returncode']})"
                     if cell["returncode"] < 0 else f"error: {message}")
            lines.append(f"| {cell['row']} | {cell['topology']} ({cell['chips']}) | {cell.get('compiler', '')} | "
                         f"{cell['batch_per_chip']} | "
                         f"{error} | | | | {cell['wall_seconds']:.0f} until then; {cell['load_average']:.1f} |")
            continue
        found = report.get("max_batch") or {}
        compile_seconds = report["train"]["compile_seconds"] + report["eval"]["compile_seconds"]
        lines.append(
            f"| {cell['row']} | {cell['topology']} ({cell['chips']}) | {report.get('compiler', '')} | "
            f"{report['batch_per_device']} | "
            f"{'yes' if report['fits'] else 'NO'}: {gib(report['needed_per_device'])} / "
            f"{gib(report['memory_per_device'])} | {report['flops_per_image'] / 1e9:.3g} | "
            f"{report['bytes_per_image'] / 1024 ** 2:.3g} | {largest_batch(cell, found)} | {compile_seconds:.0f}; "
            f"{cell['load_average']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--generations", default=",".join(TOPOLOGIES))
    parser.add_argument("--sizes", default="1,8,256")
    parser.add_argument("--max-batch-at", type=int, default=0, help="chips of the slice to search the batch on")
    parser.add_argument("--batch-granularity", type=int, default=8, help="the search tries multiples of this")
    parser.add_argument("--markdown", action="store_true", help="print the table of --out and stop")
    args = parser.parse_args()
    done = [json.loads(line) for line in open(args.out)] if os.path.exists(args.out) else []
    if args.markdown:
        print(markdown(done))
        return
    finished = {(cell["row"], cell["topology"]) for cell in done}
    for row in args.rows.split(","):
        for generation in args.generations.split(","):
            for chips in (int(size) for size in args.sizes.split(",")):
                topology = TOPOLOGIES[generation][chips]
                if (row, topology) in finished:
                    continue
                cell = compile_cell(row, topology, chips, chips == args.max_batch_at, args.batch_granularity)
                with open(args.out, "a") as file:
                    file.write(json.dumps(cell) + "\n")
                print(json.dumps({key: value for key, value in cell.items() if key != "report"}), flush=True)


if __name__ == "__main__":
    main()
