"""Run a coroutine eagerly until its first real suspension.

Most calls in a pipeline of cheap functions finish without ever suspending.
Awaiting each of them from its own task costs a scheduler round trip per item;
driving the coroutine by hand in the worker that already runs tells us, at no
cost, whether it finished at once (take the result and move on) or really
suspended (the worker must then wait for it, and hand its other work on).

The continuation keeps running in the task that started the coroutine, which
is what trio requires: a coroutine that has suspended belongs to its task.

Every step of a call's coroutine runs in the call's own context (a copy of
the run's, see ``_calls``), so a context variable one call sets is never
seen by another call driven by the same worker.
"""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from contextvars import Context
from typing import Any, Final, Generic, TypeVar

T = TypeVar("T")

__all__ = ["InContext", "Pending", "continue_from", "drive"]


class Pending(Generic[T]):
    """A coroutine that suspended once; awaiting this finishes it.

    Await it exactly once, from the task that called :func:`drive`.
    """

    __slots__ = ("_context", "_coro", "_rest", "_yielded")

    def __init__(
        self,
        coro: Coroutine[Any, Any, T],
        yielded: Any,
        context: Context | None = None,
        rest: Generator[Any, Any, T] | None = None,
    ) -> None:
        self._coro: Final = coro
        self._yielded: Final = yielded
        self._context: Final = context
        #: A generator that does all of the awaiting itself (yielding
        #: ``yielded`` first), so that awaiting adds no layer of its own.
        self._rest: Final = rest

    def __await__(self) -> Generator[Any, Any, T]:
        if self._rest is not None:
            return self._rest
        return continue_from(self._coro, self._yielded, self._context)


def continue_from(
    coro: Coroutine[Any, Any, T], yielded: Any, context: Context | None = None
) -> Generator[Any, Any, T]:
    """The rest of ``yield from coro``, picking up after its first yield ``yielded``.

    Every value the event loop sends or throws is passed through, each step
    in ``context`` if given.
    """
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            try:
                yielded = coro.throw(exc) if context is None else context.run(coro.throw, exc)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
        else:
            try:
                yielded = coro.send(sent) if context is None else context.run(coro.send, sent)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]


class InContext(Generic[T]):
    """Await ``coro`` with every step in ``context`` (the first one too, unlike :func:`drive`).

    For coroutines that must start inside a cancel scope entered first.
    """

    __slots__ = ("_context", "_coro")

    def __init__(self, coro: Coroutine[Any, Any, T], context: Context) -> None:
        self._coro = coro
        self._context = context

    def __await__(self) -> Generator[Any, Any, T]:
        try:
            yielded = self._context.run(self._coro.send, None)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        return (yield from continue_from(self._coro, yielded, self._context))


def drive(coro: Coroutine[Any, Any, T], context: Context | None = None) -> T | Pending[T]:
    """Step ``coro`` once (in ``context``, if given): its result if it finished, else a
    :class:`Pending` that finishes it in the same context.

    Exceptions raised before the first suspension propagate from here.
    ``Pending`` is private to conveyor, so a finished coroutine's result is
    never mistaken for one.
    """
    try:
        yielded = coro.send(None) if context is None else context.run(coro.send, None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    return Pending(coro, yielded, context)
