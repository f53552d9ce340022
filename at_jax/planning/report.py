"""What ``python -m at_jax.compile_for`` says about a run compiled for a topology: per chip (device), memory
against capacity, FLOPs and bytes per step and per image, collectives, compile time; as text or a dict.

A train call of K steps (``steps_per_call``, one ``lax.scan``) counts its loop body once in XLA's cost analysis,
so FLOPs, bytes and collectives are per step; memory is the whole call's (its K steps of inputs included).
"""
from __future__ import annotations

import dataclasses

from at_jax.errors import UserError
from at_jax.planning.compiled import CompiledStep
from at_jax.planning.topology import GIB, Topology, libtpu_version


class DoesNotFit(UserError, ValueError):
    """The run needs more memory per chip than the topology's chips have."""


@dataclasses.dataclass(frozen=True)
class RunShape:
    """What was compiled: the run's names and batch, as the trainer would run it on the topology."""
    description: str        # e.g. "resnet18 <- resnet34 (at_beta=1000)"
    global_batch: int
    runs: int               # parallel_runs (1: a single run)
    steps_per_call: int
    devices: int

    @property
    def batch_per_device(self) -> int:
        return self.global_batch // self.devices

    @property
    def images_per_device_step(self) -> int:
        return self.batch_per_device * self.runs


@dataclasses.dataclass(frozen=True)
class Report:
    topology: Topology
    run: RunShape
    train: CompiledStep
    eval: CompiledStep
    max_batch: dict | None = None      # {"per_chip": b, "global": B, "probes": {b: bytes}} when searched

    @property
    def needed(self) -> int:
        return max(self.train.memory.total, self.eval.memory.total)

    @property
    def fits(self) -> bool:
        return self.needed <= self.topology.memory_per_device

    def as_dict(self) -> dict:
        images = self.run.images_per_device_step
        return {"topology": self.topology.name, "num_slices": self.topology.num_slices,
                "chips": self.topology.chips, "devices": len(self.topology.devices),
                "device_kind": self.topology.devices[0].device_kind, "compiler": libtpu_version(),
                "memory_per_device": self.topology.memory_per_device, "run": self.run.description,
                "global_batch": self.run.global_batch, "batch_per_device": self.run.batch_per_device,
                "runs": self.run.runs, "steps_per_call": self.run.steps_per_call, "fits": self.fits,
                "needed_per_device": self.needed, "flops_per_image": self.train.flops / images,
                "bytes_per_image": self.train.bytes_accessed / images,
                "train": self.train.as_dict(), "eval": self.eval.as_dict(), "max_batch": self.max_batch}


def size(count: float) -> str:
    """Bytes for people, in the largest binary unit that keeps the number >= 1."""
    for unit, scale in (("GiB", GIB), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if count >= scale:
            return f"{count / scale:.{2 if unit == 'GiB' else 1}f} {unit}"
    return f"{int(count)} B"


def _flops(count: float) -> str:
    for unit, scale in (("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{count:.3g} FLOP"


def _collectives(step: CompiledStep) -> str:
    if step.collectives is None:
        return "unknown (jax could not read the compiled program back; see the warning)"
    if not step.collectives:
        return "none"
    return ", ".join(f"{op} x{entry['count']} ({size(entry['bytes'])})" for op, entry in sorted(step.collectives.items()))


def _step_lines(label: str, step: CompiledStep, capacity: int) -> list[str]:
    memory = step.memory
    return [f"{label}:",
            f"  memory per chip {size(memory.total)} of {size(capacity)}: arguments {size(memory.arguments)}, outputs "
            f"{size(memory.outputs)} ({size(memory.aliased)} of them in donated arguments), temporaries "
            f"{size(memory.temporaries)}, code {size(memory.code)}",
            f"  per step: {_flops(step.flops)}, {size(step.bytes_accessed)} accessed; collectives: {_collectives(step)}",
            f"  compiled in {step.compile_seconds:.1f} s"]


def format_report(report: Report) -> str:
    """The text the command prints."""
    topology, run = report.topology, report.run
    images = run.images_per_device_step
    runs = f", {run.runs} runs in one job" if run.runs > 1 else ""
    lines = [f"{run.description} compiled for {topology.label} by {libtpu_version()}: {topology.chips} chips, "
             f"{len(topology.devices)} devices ({topology.devices[0].device_kind}), "
             f"{size(topology.memory_per_device)} per device",
             f"batch {run.global_batch} = {run.batch_per_device} per device{runs}; {run.steps_per_call} steps per "
             f"call",
             *_step_lines(f"train call ({run.steps_per_call} steps)", report.train, topology.memory_per_device),
             *_step_lines("eval step", report.eval, topology.memory_per_device),
             f"per image: {_flops(report.train.flops / images)}, {size(report.train.bytes_accessed / images)} "
             f"accessed (train)",
             f"fits: {'yes' if report.fits else 'NO'} ({size(report.needed)} of {size(topology.memory_per_device)} "
             f"per device)"]
    if report.max_batch is not None:
        lines.append(largest_batch_line(report.max_batch))
    return "\n".join(lines)


def largest_batch_line(found: dict) -> str:
    """``largest batch that fits: 2688 per device (global 21504; 12 compiles)``, and the batches the compiler
    failed on for reasons of its own, if any."""
    failures = found.get("compiler_failures") or {}
    line = (f"largest batch that fits: {found['per_chip']} per device (global {found['global']}; "
            f"{len(found['probes']) + len(failures)} compiles)")
    if found.get("untried"):
        first, last = found["untried"]
        line += (f"; the search stopped at its limit of compiles with {first} to {last} per device untried "
                 f"(the answer is a lower bound)")
    if failures:
        smallest = min(failures)
        line += (f"; the compiler failed on {len(failures)} of them, from {smallest} per device on, so larger "
                 f"batches are untried: {failures[smallest]}")
    return line


def refusal(report: Report) -> DoesNotFit:
    """The one-line error of a run that does not fit."""
    return DoesNotFit(f"the run does not fit: it needs {size(report.needed)} per device, a "
                      f"{report.topology.generation} chip holds {size(report.topology.hbm_per_chip)}"
                      f"{'' if report.topology.devices_per_chip == 1 else f' ({size(report.topology.memory_per_device)} per core)'}"
                      f" (batch {report.run.batch_per_device} per device); lower batch_size, use bfloat16 or more chips "
                      f"(--find-max-batch)")
