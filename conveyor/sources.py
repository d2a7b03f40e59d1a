"""Inputs that need help to stream: a blocking iterable, read in a worker thread."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import TypeVar

from ._engine._threaded import ThreadedReader

__all__ = ["read_in_thread"]

T = TypeVar("T")


def read_in_thread(iterable: Iterable[T], *, batch_size: int = 64) -> AsyncIterator[T]:
    """Read a blocking iterable in a worker thread, as an async iterator.

    Use it for an input whose readings block (a file or socket read with
    blocking calls, a sensor, a database cursor): ``pipeline(read_in_thread(rows))``.
    The event loop then never waits for a reading, and the stages work on
    earlier items while the next ones are read.

    Reading follows the run's backpressure: the iterable is read only when the
    pipeline asks for more input (its window has room), one *hop* at a time.
    A hop reads one item, then more while they come quickly: up to
    ``batch_size`` items, or 2 ms of reading. So a slow source is handed on
    one reading at a time, and a quick one costs one thread hop per batch.
    At most one batch is read ahead of what the pipeline took.

    The iterable's exception, if it raises one, comes after the items it
    yielded before it. When the run ends (or stops reading), the iterator is
    closed in a worker thread, so its ``finally`` blocks run there. A reading
    in progress is never abandoned: a run that stops waits for it.

    Args:
        iterable: Any iterable; it is iterated in worker threads, one hop at a
            time (never by two threads at once).
        batch_size: The most items one hop reads (an int, at least 1).

    Returns:
        An async iterator of the iterable's items, in order. Iterate it once.

    Raises:
        TypeError: ``iterable`` is not iterable, or ``batch_size`` is not an int.
        ValueError: ``batch_size`` is less than 1.
    """
    if not hasattr(iterable, "__iter__"):
        raise TypeError(f"read_in_thread() needs an iterable, got {iterable!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise TypeError(f"batch_size must be an int, got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    return ThreadedReader(iterable, batch_size)
