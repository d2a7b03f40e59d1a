"""Tools the tests share: live-task counting and call tracking, on both backends."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import anyio.lowlevel

from conveyor import read_in_thread


def current_backend() -> str:
    if "trio" in sys.modules:
        import trio

        try:
            trio.lowlevel.current_task()
        except RuntimeError:
            pass
        else:
            return "trio"
    return "asyncio"


def live_tasks() -> int:
    """How many tasks are alive in this event loop right now."""
    if current_backend() == "trio":
        import trio

        def count(task: trio.lowlevel.Task) -> int:
            return 1 + sum(count(child) for n in task.child_nurseries for child in n.child_tasks)

        return count(trio.lowlevel.current_root_task())  # type: ignore[arg-type]
    return sum(1 for task in asyncio.all_tasks() if not task.done())


async def settle_tasks(baseline: int, timeout: float = 5.0) -> int:
    """Wait (bounded) until the task count is back to ``baseline``; return it."""
    with anyio.move_on_after(timeout):
        while live_tasks() > baseline:
            await anyio.sleep(0.001)
    return live_tasks()


class Tracker:
    """Records which calls started, which finished and whose ``finally`` ran."""

    def __init__(self) -> None:
        self.started: list[Any] = []
        self.finished: list[Any] = []
        self.cleaned: list[Any] = []
        self.active = 0
        self.peak = 0

    @property
    def running(self) -> int:
        return len(self.started) - len(self.cleaned)

    def enter(self, item: Any) -> None:
        self.started.append(item)
        self.active += 1
        self.peak = max(self.peak, self.active)

    def leave(self, item: Any) -> None:
        self.active -= 1
        self.cleaned.append(item)


async def numbers(count: int, closed: list[bool] | None = None) -> AsyncIterator[int]:
    """An async generator source that records whether it was closed."""
    try:
        for number in range(count):
            yield number
    finally:
        if closed is not None:
            closed.append(True)


def closing_source(kind: str, error: Exception) -> Any:
    """An endless input whose ``finally`` raises ``error`` when it is closed early.

    ``kind``: ``"sync"`` (a generator), ``"async"`` (an async generator that
    passes a checkpoint after each value, so a cancellation may interrupt it
    at an ``await``) or ``"read_in_thread"`` (the generator, read in a thread).
    """

    def sync() -> Iterator[int]:
        try:
            yield from range(10**9)
        finally:
            raise error

    async def asynchronous() -> AsyncIterator[int]:
        try:
            for number in range(10**9):
                yield number
                await anyio.lowlevel.checkpoint()
        finally:
            raise error

    if kind == "sync":
        return sync()
    if kind == "async":
        return asynchronous()
    assert kind == "read_in_thread"
    return read_in_thread(sync())


class MemoryWatch:
    """The growth of this process's resident memory from now to the peak of the
    samples taken (Linux only: it reads /proc)."""

    def __init__(self) -> None:
        self.baseline = self.peak = self._rss_bytes()

    def sample(self) -> None:
        self.peak = max(self.peak, self._rss_bytes())

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.baseline) / 2**20

    @staticmethod
    def _rss_bytes() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * 4096
