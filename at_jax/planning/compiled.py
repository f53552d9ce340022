"""A job's train and eval steps compiled for a topology, and XLA's figures about them.

Everything here is the compiler's count, per device (one chip, or one core where a topology lists cores): memory
from ``compiled.memory_analysis()`` (arguments, outputs, temporaries, code; an output that reuses a donated
argument counted once), FLOPs and bytes accessed from ``compiled.cost_analysis()``, and the collectives read from
the optimised HLO (each op and the bytes of its result). Nothing is a measurement of speed.
"""
from __future__ import annotations

import dataclasses
import re
import time
from typing import Any, Callable

from absl import logging

from at_jax.errors import UserError, first_line
from at_jax.planning.abstract_job import StepArguments
from at_jax.planning.crash_guard import mark
from at_jax.planning.topology import libtpu_version

#: Bytes per element of the HLO element types a step uses.
ELEMENT_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4, "u32": 4,
                 "f32": 4, "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16}
COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "collective-permute", "all-to-all")
# "%name = <result type> <op>(" or "... <op>-start(": the result type is everything between "=" and the op.
_OP = re.compile(r"=\s*(?P<type>.+?)\s+(?P<op>" + "|".join(COLLECTIVES) + r")(?:-start)?\(")
# XLA's refusals of a program larger than the device: "... Used 18.52G of 15.75G hbm. Exceeded hbm capacity by ...",
# "... the total memory required for HLO temporaries (309.39G) exceeds available HBM (15.75G)."
_OUT_OF_MEMORY = (re.compile(r"Used ([\d.]+)([KMGT]?) of ([\d.]+)([KMGT]?) hbm"),
                  re.compile(r"\(([\d.]+)([KMGT]?)\) exceeds available HBM \(([\d.]+)([KMGT]?)\)"))
_UNITS = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}
_ARRAY = re.compile(r"\b(" + "|".join(ELEMENT_BYTES) + r")\[([\d,]*)\]")


class OutOfMemory(UserError, ValueError):
    """XLA refused to compile the program: it does not fit the device's memory (``needed`` bytes, its count)."""

    def __init__(self, message: str, needed: int, capacity: int):
        super().__init__(message)
        self.needed, self.capacity = needed, capacity


def out_of_memory(error: Exception) -> OutOfMemory | None:
    """The :class:`OutOfMemory` an XLA compile error reports, else None."""
    text = str(error)
    if "RESOURCE_EXHAUSTED" not in text and "Ran out of memory" not in text:
        return None
    match = next(filter(None, (pattern.search(text) for pattern in _OUT_OF_MEMORY)), None)
    used, capacity = ((int(float(match.group(1)) * _UNITS[match.group(2)]),
                       int(float(match.group(3)) * _UNITS[match.group(4)])) if match else (0, 0))
    memory_line = next((line.strip() for line in text.splitlines() if "memory" in line.lower()), text.splitlines()[0])
    return OutOfMemory(f"the run does not fit a device's memory; XLA's compiler says: {memory_line} (lower "
                       "batch_size, use bfloat16 or more chips; --find-max-batch finds the largest batch)",
                       used, capacity)


class CompilerFailure(RuntimeError):
    """XLA's TPU compiler failed on a program for a reason of its own (an ``INTERNAL`` check, an unimplemented
    case), not the program's size: nothing in the config is at fault, another libtpu version may compile it."""


def compiler_failure(error: Exception, stage: str) -> CompilerFailure:
    """The one line for ``error``, raised by the compiler while compiling ``stage``."""
    return CompilerFailure(f"XLA's TPU compiler ({libtpu_version()}) failed compiling {stage}: {first_line(error)}; "
                           "not a fault of the config: try another libtpu version (pip index versions libtpu)")


@dataclasses.dataclass(frozen=True)
class Memory:
    """Bytes one device holds while the program runs (XLA's memory analysis)."""
    arguments: int
    outputs: int
    aliased: int        # outputs written into donated arguments (counted in both above)
    temporaries: int
    code: int

    @property
    def total(self) -> int:
        return self.arguments + self.outputs - self.aliased + self.temporaries + self.code


@dataclasses.dataclass(frozen=True)
class CompiledStep:
    """One compiled program's figures, per device."""
    memory: Memory
    flops: float
    bytes_accessed: float
    collectives: dict | None     # op -> {"count": n, "bytes": b}; None: the program's HLO could not be read
    compile_seconds: float

    def as_dict(self) -> dict:
        return {"memory": {**dataclasses.asdict(self.memory), "total": self.memory.total}, "flops": self.flops,
                "bytes_accessed": self.bytes_accessed, "collectives": self.collectives,
                "compile_seconds": round(self.compile_seconds, 2)}


def array_bytes(hlo_type: str) -> int:
    """Bytes of an HLO result type: one array (``f32[3,3,16]{...}``) or a tuple of them."""
    total = 0
    for element, dims in _ARRAY.findall(hlo_type):
        count = 1
        for size in filter(None, dims.split(",")):
            count *= int(size)
        total += count * ELEMENT_BYTES[element]
    return total


def collectives_of(hlo_text: str) -> dict:
    """Collective ops of an optimised HLO module: op -> count and bytes of their results (an async pair
    ``-start`` / ``-done`` counted once, at its start). Ops inside a loop body are counted once."""
    found: dict = {}
    for line in hlo_text.splitlines():
        match = _OP.search(line)
        if match is None or "-done(" in line:
            continue
        entry = found.setdefault(match.group("op"), {"count": 0, "bytes": 0})
        entry["count"] += 1
        entry["bytes"] += array_bytes(match.group("type"))
    return found


def _cost(compiled: Any) -> dict:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):   # older jax: one dict per program
        cost = cost[0] if cost else {}
    return cost or {}


def compile_step(function: Callable, arguments: tuple, stage: str = "the step") -> CompiledStep:
    """``function`` (a jitted step) lowered for ``arguments`` (abstract, with shardings) and compiled; raises
    :class:`OutOfMemory` for a program too large, :class:`CompilerFailure` for the compiler's own failures."""
    start = time.perf_counter()
    lowered = function.lower(*arguments)
    try:
        compiled = lowered.compile()
    except Exception as error:  # pylint: disable=broad-except  (XLA raises its runtime error type)
        refusal = out_of_memory(error)
        if refusal is not None:
            raise refusal from None
        if _from_xla(error):
            raise compiler_failure(error, stage) from error
        raise
    seconds = time.perf_counter() - start
    analysis = compiled.memory_analysis()
    memory = Memory(arguments=int(analysis.argument_size_in_bytes), outputs=int(analysis.output_size_in_bytes),
                    aliased=int(analysis.alias_size_in_bytes), temporaries=int(analysis.temp_size_in_bytes),
                    code=int(analysis.generated_code_size_in_bytes))
    cost = _cost(compiled)
    return CompiledStep(memory, float(cost.get("flops", 0.0)), float(cost.get("bytes accessed", 0.0)),
                        readable_collectives(compiled, stage), seconds)


def _from_xla(error: Exception) -> bool:
    return type(error).__name__ in ("JaxRuntimeError", "XlaRuntimeError")


def readable_collectives(compiled: Any, stage: str) -> dict | None:
    """:func:`collectives_of` the compiled program's optimised HLO, or None where jax cannot read that HLO back
    (libtpu 0.0.52 beside jax 0.10.2 at large batches: ``INTERNAL: RET_CHECK failure ... async-update instruction
    should have 1 operands but sees 3``). The program compiled; its memory, FLOPs and bytes stand."""
    try:
        return collectives_of(compiled.as_text())
    except Exception as error:  # pylint: disable=broad-except  (XLA raises its runtime error type)
        if not _from_xla(error):
            raise
        logging.warning("%s compiled, but this jax cannot read back its optimised HLO (%s): its collectives are "
                        "unknown", stage, first_line(error))
        return None


def compile_job(setup: Any, arguments: StepArguments, where: str = "") -> tuple[CompiledStep, CompiledStep]:
    """(train call, eval step) of a set-up job compiled for its mesh's devices; each named as the stage being
    compiled (:func:`~at_jax.planning.crash_guard.mark`, ``where``: the topology and batch) before it is."""
    stages = (f"the train call{where}", f"the eval step{where}")
    mark(stages[0])
    train = compile_step(setup.train_steps, arguments.train, stages[0])
    mark(stages[1])
    return train, compile_step(setup.eval_step, arguments.eval, stages[1])
