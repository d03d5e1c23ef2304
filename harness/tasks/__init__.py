"""Synthetic sequence tasks (pure NumPy); the time series live in harness.forecast.

make_task(name, **params) builds a SequenceTask. A new task is one SequenceTask subclass registered in TASKS
(plus its conf/task YAML); a discrete one whose inputs can repeat subclasses HeldOutSplit
(harness.tasks.held_out) for a validation part that training never draws.
"""

from __future__ import annotations

import inspect

from harness.tasks.base import HEADS, MODES, STREAM_NAMES, Batch, SequenceTask, task_streams
from harness.tasks.bits import BinaryAddition, BitSum, XorStream
from harness.tasks.fingerprint import fingerprint
from harness.tasks.long_range import Adding, Latch, TemporalOrder
from harness.tasks.symbols import Copy, Reversal

TASKS: dict[str, type[SequenceTask]] = {
    task.name: task
    for task in (BinaryAddition, XorStream, BitSum, Adding, Copy, TemporalOrder, Latch, Reversal)
}
TASK_NAMES: tuple[str, ...] = tuple(TASKS)


def task_parameters(name: str) -> dict[str, object]:
    """The parameters of task name with their defaults."""
    if name not in TASKS:
        raise ValueError(f"task name must be one of {sorted(TASK_NAMES)}, got {name!r}")
    return {
        key: parameter.default
        for key, parameter in inspect.signature(TASKS[name].__init__).parameters.items()
        if key != "self"
    }


def make_task(name: str, **params: object) -> SequenceTask:
    """Build task name with params (validated; unknown ones raise ValueError listing the allowed ones)."""
    allowed = task_parameters(name)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for task {name!r}; allowed: {sorted(allowed)}")
    return TASKS[name](**params)


__all__ = [
    "HEADS",
    "MODES",
    "STREAM_NAMES",
    "TASKS",
    "TASK_NAMES",
    "Adding",
    "Batch",
    "BinaryAddition",
    "BitSum",
    "Copy",
    "Latch",
    "Reversal",
    "SequenceTask",
    "TemporalOrder",
    "XorStream",
    "fingerprint",
    "make_task",
    "task_parameters",
    "task_streams",
]
