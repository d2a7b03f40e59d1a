"""``AsyncStream``: the lazy result of calling a pipeline on data.

Nothing runs until it is iterated. Each stream is one run and is consumed
once: with ``async for`` (safe to leave by ``break`` or an exception: every
worker is stopped), with ``await stream.collect()``, or inside
``async with stream.open() as results``. Like any exhausted iterator, a
stream read again yields nothing (as conveyor-streaming 1.2's streams do).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any, Generic, TypeVar

from ._engine._host import HostedIterator
from ._engine._instrument import check_instruments
from ._engine._run import RunPlan, RunScope
from .error_handling import Failure
from .statistics import RunStatistics

__all__ = ["AsyncStream"]

T = TypeVar("T", covariant=True)  # a stream of ``bool`` is a stream of ``int``

#: What a stream that was read already runs: nothing.
_EMPTY_PLAN = RunPlan(stages=(), data=range(0))


class _Exhausted(AsyncIterator[Any]):
    """The iterator of a stream that was read already: it ends at once."""

    async def __anext__(self) -> Any:
        raise StopAsyncIteration


class AsyncStream(AsyncIterable[T], Generic[T]):
    """The results of one pipeline run, streamed as they are released.

    ``failures`` lists a :class:`~conveyor.error_handling.Failure` for every item
    or batch that a skip policy dropped, as the run goes (read it during or
    after iteration). ``AsyncStream(source)`` wraps any iterable or async
    iterable as a stream (for code written against conveyor-streaming).
    """

    def __init__(self, source: AsyncIterable[T] | Iterable[T]) -> None:
        self._plan = RunPlan(stages=(), data=source)
        self._consumed = False
        self._stop_requested = False
        self.failures: list[Failure] = []
        self._scope: RunScope[T] | None = None

    @classmethod
    def _of_plan(cls, plan: RunPlan) -> AsyncStream[T]:
        stream: AsyncStream[T] = cls.__new__(cls)
        stream._plan = plan
        stream._consumed = False
        stream._stop_requested = False
        stream.failures = []
        stream._scope = None
        return stream

    def __repr__(self) -> str:
        mode = "ordered" if self._plan.ordered else "as_completed"
        state = "consumed" if self._consumed else "not started"
        return f"<AsyncStream of {len(self._plan.stages)} stage(s), {mode}, {state}>"

    def _claim(self) -> bool:
        """Mark the stream consumed; False if it already was (then it reads as empty)."""
        if self._consumed:
            return False
        self._consumed = True
        return True

    def __aiter__(self) -> AsyncIterator[T]:
        """The run's results; an iterator that yields nothing if the stream was read."""
        if not self._claim():
            return _Exhausted()
        return HostedIterator(self._new_scope)

    def _new_scope(self) -> RunScope[T]:
        self._scope = RunScope(self._plan, self.failures)
        if self._stop_requested:
            self._scope.intake.stop()
        return self._scope

    def stop_reading(self) -> None:
        """Read no more input; finish the items read so far, then end normally.

        A graceful stop, for a service told to shut down (on SIGTERM, say).
        Every item already read from the input is processed and released as
        usual, so your loop goes on receiving their results; the input is
        closed (its ``finally`` blocks run); then the stream ends as if the
        input had ended, without an error. Calls in flight are not
        interrupted. To abandon the work in flight instead, cancel the run
        (a cancel scope around your loop).

        Call it from any task of the run's event loop (a signal handler's
        task, say), at any time, as often as you like; it does not wait. Before
        the run has started, the run reads nothing at all. Inside
        ``async with stream.open() as results`` the same method is
        ``results.stop_reading()``.
        """
        self._stop_requested = True
        if self._scope is not None:
            self._scope.intake.stop()

    def open(self) -> RunScope[T]:
        """``async with stream.open() as results``: run inside a block (structured).

        On a stream that was read already, the block's results are empty.
        """
        if not self._claim():
            return RunScope(_EMPTY_PLAN)
        return self._new_scope()

    def statistics(self) -> RunStatistics:
        """A snapshot of this stream's run (see :class:`~conveyor.RunStatistics`).

        Raises ``RuntimeError`` before the run has started.
        """
        results = self._scope.results if self._scope is not None else None
        if results is None:
            raise RuntimeError("the run has not started yet: iterate the stream first")
        return results.statistics()

    async def collect(self) -> list[T]:
        """Run to the end and return every result, in release order.

        ``[]`` on a stream that was read already.
        """
        collected: list[T] = []
        async with self.open() as results:
            collected = [item async for item in results]
        return collected

    async def first(self) -> T | None:
        """The first result (``None`` if there is none); the rest of the run is stopped.

        ``None`` on a stream that was read already.
        """
        first: T | None = None
        async with self.open() as results:
            async for item in results:
                first = item
                break
        return first

    def as_completed(self) -> AsyncStream[T]:
        """The same run, releasing results in completion order.

        Call it before reading the stream. The run is this stream's: this
        stream is consumed by the call (reading it afterwards yields
        nothing). A stream whose reading has started (or ended) is used, and
        a used stream reads as empty (as conveyor-streaming 1.2's exhausted
        streams do): on it, ``as_completed()`` returns an empty stream, and a
        run under way goes on in its own mode, unchanged.
        """
        if not self._claim():
            return AsyncStream._of_plan(_EMPTY_PLAN)
        stream: AsyncStream[T] = AsyncStream._of_plan(
            dataclasses.replace(self._plan, ordered=False)
        )
        stream.failures = self.failures
        return stream

    def with_instruments(self, *instruments: Any) -> AsyncStream[T]:
        """This run, reporting to these instruments too (before iterating only).

        See :meth:`conveyor.Pipeline.with_instruments`; these are added to the
        pipeline's own.

        Raises:
            RuntimeError: the stream is already being iterated.
            TypeError: an argument defines none of the hooks.
        """
        if self._consumed:
            raise RuntimeError("with_instruments() must be called before the stream is iterated")
        checked = check_instruments(instruments)
        self._consumed = True
        plan = dataclasses.replace(self._plan, instruments=(*self._plan.instruments, *checked))
        stream: AsyncStream[T] = AsyncStream._of_plan(plan)
        stream.failures = self.failures
        return stream
