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

An error the run raises on its way out reaches the consumer exactly once:
from ``__anext__`` or ``aclose()`` when it can; when another exception is
already on its way (say the consumer was cancelled) or the iterator was
dropped, it goes to the event loop (see :meth:`Loop.report`), never nowhere.

The host is the one task conveyor starts outside a task group.
"""

from __future__ import annotations

import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, TypeVar

import anyio

from ._backend import Loop, current_loop
from ._errors import reraise
from ._run import ResultStream, RunScope

__all__ = ["HostedIterator"]

T = TypeVar("T")

_LEFT_BEHIND = (
    "conveyor: a run raised this after its iterator was dropped (the loop over it was "
    "left by break or an exception), so there was nobody left to raise it to"
)


class _Host:
    """What the host task and the iterator share; it never refers to the iterator."""

    __slots__ = (
        "_cancelled_class",
        "abandoned",
        "cancelled",
        "cause",
        "done",
        "error",
        "finished",
        "loop",
        "results",
        "run_scope",
        "scope",
        "started",
    )

    def __init__(self, loop: Loop) -> None:
        self.loop = loop
        self.started = anyio.Event()
        self.finished = anyio.Event()
        self.done = anyio.Event()  # the consumer needs nothing more
        self.scope: anyio.CancelScope | None = None
        self.run_scope: RunScope[Any] | None = None
        self.cause: BaseException | None = None  # why, if cancelled before the run was made
        self.cancelled = False
        self.abandoned = False  # the iterator was dropped: errors go to the loop
        self._cancelled_class = anyio.get_cancelled_exc_class()  # also outside tasks
        self.results: ResultStream[Any] | None = None
        self.error: BaseException | None = None

    def cancel(self, cause: BaseException | None = None) -> None:
        """Stop the run: ``cause`` None for the consumer's stop, else what ended it."""
        self.cancelled = True
        if self.run_scope is not None:
            self.run_scope.end_early(cause)
        else:  # the run is not made yet: it is told when it is
            self.cause = cause
        if self.results is not None:
            self.results.stop.set()
        if self.scope is not None:
            self.scope.cancel()

    def cancel_soon(self) -> None:
        """Called when the iterator is collected: from any thread, at any time."""
        if self.finished.is_set() and self.error is None:
            return  # nothing to stop, nothing to report (and nothing kept alive)
        if not self.finished.is_set() and self.results is not None:
            self.results.stop.set()  # the stop is now: no call may start after it
        self.loop.call_soon_threadsafe(self.abandon)

    def abandon(self) -> None:
        """Nobody will read the run any more: stop it, and report its error."""
        self.abandoned = True
        if self.finished.is_set():
            self.report_error()
        else:
            self.cancel()

    def take_error(self) -> BaseException | None:
        """The run's error, once; None if there was none (or it was a cancellation)."""
        error, self.error = self.error, None
        if error is None or isinstance(error, self._cancelled_class):
            return None
        return error

    def report_error(self) -> None:
        """Hand the run's error to the event loop: the program has left."""
        error = self.take_error()
        if error is not None:
            self.loop.report(_LEFT_BEHIND, error)

    async def run(self, make_scope: Callable[[], RunScope[Any]]) -> None:
        try:
            with anyio.CancelScope() as scope:
                self.scope = scope
                run_scope = self.run_scope = make_scope()
                if self.cancelled:
                    run_scope.end_early(self.cause)
                    self.cause = None
                    scope.cancel()
                async with run_scope as results:
                    self.results = results
                    self.started.set()
                    await self.done.wait()
        except BaseException as exc:  # a detached task: hand everything to the consumer
            self.error = exc
        finally:
            self.started.set()
            self.finished.set()
            if self.abandoned:
                self.report_error()


class HostedIterator(AsyncIterator[T], Generic[T]):
    """What ``async for`` gets from a conveyor stream; see the module docstring."""

    def __init__(self, make_scope: Callable[[], RunScope[T]]) -> None:
        self._make_scope = make_scope
        self._host: _Host | None = None
        self._results: ResultStream[T] | None = None
        self._ready: deque[T] = deque()
        self._closed = False

    def __aiter__(self) -> HostedIterator[T]:
        return self

    @property
    def failures(self) -> list[Any]:
        """Items or batches skipped by an ``on_error`` policy in this run."""
        return self._results.failures if self._results is not None else []

    async def __anext__(self) -> T:
        # ResultStream.__anext__'s fast path, inlined (no extra coroutine per
        # item): ``_ready`` is the run's deque of results moved out for the
        # consumer, an empty one of its own until the run starts.
        ready = self._ready
        if ready:
            return ready.popleft()
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
        except BaseException as exc:
            # The consumer's own exception wins, and so does the run's failure.
            # A cancellation is a stop, not an error: an error the run raises
            # while stopping (a close error) comes out in its place, as it
            # would from ``open()`` (docs/errors.md).
            cancelled = isinstance(exc, anyio.get_cancelled_exc_class())
            await self._stop(raise_error=cancelled, cause=exc)
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
        self._ready = host.results._ready
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

    async def _stop(self, raise_error: bool, cause: BaseException | None = None) -> None:
        """Stop the run early and wait until every worker is gone.

        ``cause``: the exception that left ``__anext__``, if any (None: the
        consumer stopped). An error the run raised while stopping (the input's
        ``finally``, say) is raised here if ``raise_error``, else handed to
        the event loop.
        """
        self._closed = True
        host = self._host
        if host is None:
            return
        host.cancel(cause)
        with anyio.CancelScope(shield=True):
            await host.finished.wait()
        if raise_error:
            error = host.take_error()
            if error is not None:
                reraise(error)
        else:
            host.report_error()

    async def aclose(self) -> None:
        """Stop the run (if it is still going) and wait for its workers.

        Raises what the run raised while stopping, if anything (an exception
        from the input's ``finally`` block, say).
        """
        if not self._closed:
            await self._stop(raise_error=True)
