"""The oracle: conveyor's output rules, run sequentially, one stage after another.

A pipeline here is a list of :class:`Stage`; each holds a *pure* synchronous
function that returns what the real task's function would return. The model
applies the rules of the public contract (api.md, sections 2, 4 and 5) in
input order, so its result is what ordered mode must release:

- a single task calls the function once per value; a batch task gathers the
  values in order into lists of ``max_size`` and calls it once per list, and
  a final remainder is processed only if it holds at least ``min_size``;
- ``None`` drops the value, a ``list`` is flattened one level, a generator is
  drained, anything else (a ``tuple`` or ``str`` too) is one value;
- a call that raises is tried ``attempts`` times; then ``on_error="fail"``
  stops the run and a skip policy drops the value (or batch) and records a
  failure;
- a generator that fails part-way keeps the values it made before the
  failure (``partial``: they were passed on), and is then never retried.

A run that fails leaves a :data:`FAILED` marker where the failing value's
outputs would have been; ordered mode can release nothing from there on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FAILED", "Outcome", "Stage", "outputs_of", "run_model"]


class _Failed:
    def __repr__(self) -> str:
        return "FAILED"


#: Where an ``on_error="fail"`` call stopped the run.
FAILED: Any = _Failed()


@dataclass(frozen=True)
class Stage:
    """One task: its pure function and the options that change what comes out."""

    name: str
    func: Callable[[Any], Any]
    batch: bool = False
    min_size: int = 1
    max_size: int = 1
    on_error: str = "fail"
    attempts: int = 1
    partial: tuple[Any, ...] = ()  # what a failing call makes before it raises
    by_time: bool = False  # a batch stage with max_wait: a partial batch is called in time


@dataclass
class Outcome:
    """What a run releases, and what happened on the way."""

    outputs: list[Any] = field(default_factory=list)
    calls: list[tuple[str, Any]] = field(default_factory=list)  # (stage, argument) per try
    failures: list[tuple[str, Any]] = field(default_factory=list)  # skipped (stage, argument)
    leftovers: list[tuple[str, list[Any]]] = field(default_factory=list)  # unprocessed rest


def outputs_of(result: Any) -> list[Any]:
    """The output rule: the values one call's return value becomes."""
    if result is None:
        return []
    if isinstance(result, list):
        return list(result)
    if isinstance(result, Iterator):  # a generator: drained
        return list(result)
    return [result]


def run_model(stages: list[Stage], inputs: list[Any]) -> Outcome:
    """Run ``inputs`` through ``stages``, in order, one call at a time."""
    outcome = Outcome()
    values = list(inputs)
    for stage in stages:
        values = _run_stage(stage, values, outcome)
    outcome.outputs = values
    return outcome


def _run_stage(stage: Stage, values: list[Any], outcome: Outcome) -> list[Any]:
    stopped = FAILED in values
    if stopped:  # nothing from the failure on reaches this stage
        values = values[: values.index(FAILED)]
    if stage.batch:
        size = stage.max_size
        arguments: list[Any] = [values[i : i + size] for i in range(0, len(values), size)]
        remainder = bool(arguments) and len(arguments[-1]) < size
        if remainder and stopped and not (stage.by_time and len(arguments[-1]) >= stage.min_size):
            # The input never ends: it waits for more, forever. (With max_wait
            # it is called once it waited, which may come before the failure
            # stops the run or not: the output up to the failure may hold it.)
            arguments.pop()
        elif remainder and len(arguments[-1]) < stage.min_size:  # too small: not processed
            outcome.leftovers.append((stage.name, arguments.pop()))
    else:
        arguments = values
    out: list[Any] = []
    for argument in arguments:
        attempt = 0
        while True:
            attempt += 1
            outcome.calls.append((stage.name, argument))
            try:
                result = stage.func(argument)
            except Exception:
                if not stage.partial and attempt < stage.attempts:
                    continue  # retried only while it made nothing
                out.extend(stage.partial)
                if stage.on_error == "fail":
                    out.append(FAILED)
                else:
                    outcome.failures.append((stage.name, argument))
                break
            out.extend(outputs_of(result))
            break
        if out and out[-1] is FAILED:
            break
    if stopped and FAILED not in out:
        out.append(FAILED)
    return out
