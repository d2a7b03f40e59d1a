"""Run a coroutine eagerly until its first real suspension.

Most calls in a pipeline of cheap functions finish without ever suspending.
Awaiting each of them from its own task costs a scheduler round trip per item;
driving the coroutine by hand in the worker that already runs tells us, at no
cost, whether it finished at once (take the result and move on) or really
suspended (the worker must then wait for it, and hand its other work on).

The continuation keeps running in the task that started the coroutine, which
is what trio requires: a coroutine that has suspended belongs to its task.
"""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from typing import Any, Final, Generic, TypeVar

T = TypeVar("T")

__all__ = ["Pending", "drive"]


class Pending(Generic[T]):
    """A coroutine that suspended once; awaiting this finishes it.

    Await it exactly once, from the task that called :func:`drive`.
    """

    __slots__ = ("_coro", "_yielded")

    def __init__(self, coro: Coroutine[Any, Any, T], yielded: Any) -> None:
        self._coro: Final = coro
        self._yielded: Final = yielded

    def __await__(self) -> Generator[Any, Any, T]:
        # The rest of ``yield from coro``, picking up after its first yield:
        # every value the event loop sends or throws is passed through.
        coro = self._coro
        yielded = self._yielded
        while True:
            try:
                sent = yield yielded
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:
                try:
                    yielded = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
            else:
                try:
                    yielded = coro.send(sent)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]


def drive(coro: Coroutine[Any, Any, T]) -> T | Pending[T]:
    """Step ``coro`` once: its result if it finished, else a :class:`Pending`.

    Exceptions raised before the first suspension propagate from here.
    ``Pending`` is private to conveyor, so a finished coroutine's result is
    never mistaken for one.
    """
    try:
        yielded = coro.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    return Pending(coro, yielded)
