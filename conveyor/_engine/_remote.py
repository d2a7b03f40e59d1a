"""What runs in a worker process or on a cluster: one round trip of calls.

A round trip carries the task's function, its side inputs and several
values, pickled together on the event loop's thread (so that a pickling
problem is reported there, naming the task). :func:`run_calls` calls the
function once per value and sends back one *outcome* per call, in order:
``(True, result)`` or ``(False, exception, traceback_text)``, plus the
seconds the calls took, which tune the size of later round trips.

Tasks pickle *by reference*: ``@single_task def f`` rebinds the module's name
``f`` to the task, so pickle's own lookup of ``f.func`` would find the task
instead of the function and refuse. :func:`portable` wraps such a function in
a reference that the worker resolves back to the task's function, also for a
``__main__`` script (multiprocessing and anyio load it as ``__mp_main__`` and
alias it as ``__main__`` in the worker).
"""

from __future__ import annotations

import contextvars
import importlib
import os
import pickle
import sys
import traceback
import types
from collections.abc import Callable, Iterator
from time import perf_counter
from typing import Any

from ..exceptions import RemoteError

__all__ = ["Outcome", "call_all", "pickling_errors", "portable", "run_calls"]

#: ``(True, result)`` or ``(False, exception, remote traceback text)``.
Outcome = tuple[Any, ...]

PROTOCOL = pickle.HIGHEST_PROTOCOL


def _lookup(module_name: str, qualname: str) -> Any:
    module = sys.modules.get(module_name)
    if module is None:
        module = importlib.import_module(module_name)
    target: Any = module
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def _resolve_task_function(module_name: str, qualname: str) -> Any:
    """In the worker: the function of the task at ``module.qualname``."""
    target = _lookup(module_name, qualname)
    return getattr(target, "func", target)


class _TaskFunction:
    """Pickles as a reference to the function behind a task of the same name."""

    __slots__ = ("module", "qualname")

    def __init__(self, module: str, qualname: str) -> None:
        self.module = module
        self.qualname = qualname

    def __reduce__(self) -> tuple[Any, ...]:
        return (_resolve_task_function, (self.module, self.qualname))


class _BoundTaskFunction:
    """Pickles as the task's function bound to ``instance`` (a task on a method)."""

    __slots__ = ("function", "instance")

    def __init__(self, function: Any, instance: Any) -> None:
        self.function = function
        self.instance = instance

    def __reduce__(self) -> tuple[Any, ...]:
        return (types.MethodType, (self.function, self.instance))


def portable(func: Callable[..., Any]) -> Any:
    """What to pickle in place of ``func`` so that a worker gets ``func`` back."""
    if isinstance(func, types.MethodType):
        return _BoundTaskFunction(portable(func.__func__), func.__self__)
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<locals>" in qualname:
        return func
    try:
        target = _lookup(module, qualname)
    except (ImportError, AttributeError):
        return func
    if target is not func and getattr(target, "func", None) is func:
        return _TaskFunction(module, qualname)
    return func


def _materialized(result: Any) -> Any:
    """A result that can travel: a generator's values as a list."""
    if isinstance(result, Iterator) and isinstance(result, types.GeneratorType):
        return list(result)
    return result


def _portable_error(exc: Exception) -> Exception:
    """``exc`` if it survives a pickle round trip, else a RemoteError describing it."""
    try:
        pickle.loads(pickle.dumps(exc, PROTOCOL))
    except Exception:
        return RemoteError(f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}")
    return exc


def _failed(exc: Exception) -> Outcome:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return (False, _portable_error(exc), text)


def _call_one(
    func: Callable[..., Any], value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    return _materialized(func(value, *args, **kwargs))


def call_all(
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    values: list[Any],
    context: contextvars.Context,
    stop: Any = None,
    tickets: Iterator[int] | None = None,
) -> tuple[list[Outcome], float]:
    """Call ``func`` once per value: one outcome per call, and the seconds they took.

    This is a round trip to a thread pool (nothing is pickled; an outcome
    carries no traceback text, the exception has its own traceback). Each
    call runs in its own copy of ``context``, the run's starting context,
    as a call in ``executor="thread"`` does: what one call sets is never
    seen by another, whatever thread of the pool runs it. ``stop``: the
    run's stop flag (its ``called`` attribute), looked at before each call:
    once the run stops, no call starts, and fewer outcomes than values
    come back. ``tickets``: an ``itertools.count()`` shared with the event
    loop, which tells how many calls started: this thread takes ticket ``i``
    before it starts call ``i`` (``next`` on a count is atomic), and the
    event loop, if it stops waiting for the round trip, takes the next
    ticket: its number is the calls started, and no call starts after it.
    """
    outcomes: list[Outcome] = []
    started = perf_counter()
    expected = 0
    for value in values:
        if stop is not None and stop.called:
            break
        if tickets is not None:
            if next(tickets) != expected:  # the event loop took one: it stopped waiting
                break
            expected += 1
        try:
            outcomes.append((True, context.copy().run(_call_one, func, value, args, kwargs)))
        except Exception as exc:
            outcomes.append((False, exc, None))
    return outcomes, perf_counter() - started


def run_calls(payload: bytes) -> bytes:
    """In a worker process: call the function once per value; the pickled outcomes.

    ``payload`` is ``pickle((function, args, kwargs, values, stop_marker))``.
    Returns ``pickle((outcomes, seconds))``. ``stop_marker``: None, or the
    path of a file that appears when the run stops (a process pool of this
    machine): looked for before each call, and once it is there no call
    starts, and fewer outcomes than values come back. A result that cannot be pickled becomes
    that call's failure, so one bad result never loses its neighbours'. Each
    call runs in its own copy of the worker's context (what the worker itself
    set, such as Dask's current worker): the run's context variables do not
    travel, and what one call sets is never seen by a later call in the same
    worker.
    """
    func, args, kwargs, values, stop_marker = pickle.loads(payload)
    outcomes: list[Outcome] = []
    started = perf_counter()
    for value in values:
        if stop_marker is not None and os.path.exists(stop_marker):
            break
        try:
            outcome = contextvars.copy_context().run(_call_one, func, value, args, kwargs)
            outcomes.append((True, outcome))
        except Exception as exc:
            outcomes.append(_failed(exc))
    seconds = perf_counter() - started
    try:
        return pickle.dumps((outcomes, seconds), PROTOCOL)
    except Exception:
        pass
    for index, error in pickling_errors(outcomes).items():
        problem = TypeError(
            f"the result of the call on value {index} of this round trip cannot be "
            f"pickled to return it from the worker: {error}"
        )
        outcomes[index] = (False, problem, "".join(traceback.format_exception(problem)))
    return pickle.dumps((outcomes, seconds), PROTOCOL)


def pickling_errors(values: list[Any]) -> dict[int, Exception]:
    """The exception pickling each value of ``values`` raises, by index: for
    finding the bad ones once the whole list has failed to pickle."""
    errors: dict[int, Exception] = {}
    for index, value in enumerate(values):
        try:
            pickle.dumps(value, PROTOCOL)
        except Exception as exc:
            errors[index] = exc
    return errors
