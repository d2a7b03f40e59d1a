"""Tools the tests share: live-task counting and call tracking, on both backends."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio


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
