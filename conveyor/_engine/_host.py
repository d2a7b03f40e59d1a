"""Plain ``async for`` over a pipeline, done safely.

An async generator that yields from inside a task group breaks on early exit
(asyncio finalizes it from another task; trio raises internal errors), so
plain iteration is a lazy iterator object instead. Its first ``__anext__``
starts a *host* task that runs the structured :class:`RunScope`; the results
are read straight from the run's output stream. Every way out cancels the
host and, where the consumer can still wait, waits for it:

- the run ends: the host is told to leave its block, and awaited;
- ``aclose()``, or an exception (cancellation included) inside ``__anext__``:
  the host is cancelled and awaited, shielded;
- the iterator is dropped without either (``break`` in a plain loop): a
  ``weakref.finalize`` callback asks the loop, thread-safely, to cancel it.

The host is the one task conveyor starts outside a task group.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, TypeVar

import anyio

from ._backend import Loop, current_loop
from ._errors import reraise
from ._run import ResultStream, RunScope

__all__ = ["HostedIterator"]

T = TypeVar("T")


class _Host:
    """What the host task and the iterator share; it never refers to the iterator."""

    __slots__ = ("cancelled", "done", "error", "finished", "loop", "results", "scope", "started")

    def __init__(self, loop: Loop) -> None:
        self.loop = loop
        self.started = anyio.Event()
        self.finished = anyio.Event()
        self.done = anyio.Event()  # the consumer needs nothing more
        self.scope: anyio.CancelScope | None = None
        self.cancelled = False
        self.results: ResultStream[Any] | None = None
        self.error: BaseException | None = None

    def cancel(self) -> None:
        self.cancelled = True
        if self.results is not None:
            self.results.stop.set()
        if self.scope is not None:
            self.scope.cancel()

    def cancel_soon(self) -> None:
        """Called when the iterator is collected: from any thread, at any time."""
        if not self.finished.is_set():
            if self.results is not None:
                self.results.stop.set()  # the stop is now: no call may start after it
            self.loop.call_soon_threadsafe(self.cancel)

    async def run(self, make_scope: Callable[[], RunScope[Any]]) -> None:
        try:
            with anyio.CancelScope() as scope:
                self.scope = scope
                if self.cancelled:
                    scope.cancel()
                async with make_scope() as results:
                    self.results = results
                    self.started.set()
                    await self.done.wait()
        except BaseException as exc:  # a detached task: hand everything to the consumer
            self.error = exc
        finally:
            self.started.set()
            self.finished.set()


class HostedIterator(AsyncIterator[T], Generic[T]):
    """What ``async for`` gets from a conveyor stream; see the module docstring."""

    def __init__(self, make_scope: Callable[[], RunScope[T]]) -> None:
        self._make_scope = make_scope
        self._host: _Host | None = None
        self._results: ResultStream[T] | None = None
        self._closed = False

    def __aiter__(self) -> HostedIterator[T]:
        return self

    @property
    def failures(self) -> list[Any]:
        """Items or batches skipped by an ``on_error`` policy in this run."""
        return self._results.failures if self._results is not None else []

    async def __anext__(self) -> T:
        results = self._results
        if results is not None and results._ready:
            # ResultStream.__anext__'s fast path, inlined: no extra coroutine per item.
            results._countdown -= 1
            if results._countdown:
                return results._ready.popleft()
        return await self._next()

    async def _next(self) -> T:
        results = self._results
        if results is None and self._closed:
            raise StopAsyncIteration
        try:
            if results is None:
                results = await self._start()
            return await results.next_slow()
        except StopAsyncIteration:
            await self._finish()
            raise
        except BaseException:
            await self._stop()
            raise

    async def _start(self) -> ResultStream[T]:
        host = self._host = _Host(current_loop())
        finalizer = weakref.finalize(self, host.cancel_soon)
        finalizer.atexit = False
        make_scope = self._make_scope
        host.loop.spawn_detached(lambda: host.run(make_scope))
        await host.started.wait()
        if host.results is None:  # the run failed to start
            await self._finish()
            raise StopAsyncIteration
        self._results = host.results
        return host.results

    async def _finish(self) -> None:
        """The run released everything: let the host leave, and re-raise its error."""
        self._closed = True
        host = self._host
        if host is None:
            return
        host.done.set()
        with anyio.CancelScope(shield=True):
            await host.finished.wait()
        error, host.error = host.error, None
        if error is not None:
            reraise(error)

    async def _stop(self) -> None:
        """Stop the run early and wait until every worker is gone."""
        self._closed = True
        host = self._host
        if host is None:
            return
        host.cancel()
        with anyio.CancelScope(shield=True):
            await host.finished.wait()

    async def aclose(self) -> None:
        """Stop the run (if it is still going) and wait for its workers."""
        if not self._closed:
            await self._stop()
