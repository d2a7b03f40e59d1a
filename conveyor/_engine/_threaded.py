"""A blocking iterable read in a worker thread, as an async iterator.

Each ``__anext__`` that finds nothing buffered makes one thread hop, which
reads one item, then more while they come quickly: until ``batch_size`` items
or one time slice (``TIME_SLICE``) of reading. The thread reads only when
asked, so the reader's backpressure holds: the feeder asks only while the
run's window has room, and at most one batch is read ahead of it.

A hop in progress is not abandoned on cancellation (a thread cannot be
interrupted, and the iterator must not be advanced by two threads): a run
that stops waits for the reading in progress. The iterator is closed in a
worker thread too, since its ``finally`` blocks may block.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator
from time import perf_counter as clock
from typing import Generic, TypeVar

import anyio
import anyio.to_thread

from ._single import TIME_SLICE

__all__ = ["ThreadedReader"]

T = TypeVar("T")


class ThreadedReader(AsyncIterator[T], Generic[T]):
    """See :func:`conveyor.read_in_thread`."""

    def __init__(self, iterable: Iterable[T], batch_size: int) -> None:
        self._iterable: Iterable[T] | None = iterable
        self._iterator: Iterator[T] | None = None
        self._batch_size = batch_size
        self._buffer: deque[T] = deque()
        self._exhausted = False
        self._error: Exception | None = None  # raised once the buffer is handed out
        self._limiter: anyio.CapacityLimiter | None = None

    def __repr__(self) -> str:
        return f"<read_in_thread({self._iterable!r})>"

    def __aiter__(self) -> ThreadedReader[T]:
        return self

    async def __anext__(self) -> T:
        buffer = self._buffer
        if not buffer:
            error, self._error = self._error, None
            if error is not None:
                raise error
            if self._exhausted:
                raise StopAsyncIteration
            if self._limiter is None:
                self._limiter = anyio.CapacityLimiter(1)
            await anyio.to_thread.run_sync(self._read, limiter=self._limiter)
            if not buffer:
                return await self.__anext__()  # the end, or the iterator's exception
        return buffer.popleft()

    def take_buffered(self) -> list[T]:
        """The items read in the thread and not handed out yet (the buffer is emptied)."""
        items = list(self._buffer)
        self._buffer.clear()
        return items

    def _read(self) -> None:
        """In the worker thread: read one item, then more while they come quickly."""
        iterator = self._iterator
        if iterator is None:
            assert self._iterable is not None
            iterator = self._iterator = iter(self._iterable)
        buffer = self._buffer
        started = clock()
        for _ in range(self._batch_size):
            try:
                buffer.append(next(iterator))
            except StopIteration:
                self._exhausted = True
                return
            except Exception as exc:  # after the items read before it
                self._error = exc
                self._exhausted = True
                return
            if clock() - started >= TIME_SLICE:
                return

    async def aclose(self) -> None:
        """Close the iterable's iterator (in a worker thread), so its ``finally`` runs."""
        self._exhausted = True
        self._buffer.clear()
        iterator, self._iterator = self._iterator, None
        if iterator is None and isinstance(self._iterable, Iterator):
            iterator = self._iterable  # never started: close it all the same
        self._iterable = None
        close = getattr(iterator, "close", None)
        if close is not None:
            await anyio.to_thread.run_sync(close, limiter=self._limiter)
