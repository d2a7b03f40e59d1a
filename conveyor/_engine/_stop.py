"""The run's *stop* (api.md §6): the moment it begins to end early.

Cancelling the run's task group reaches each worker only at its next
checkpoint, and a stage's leader starts cheap calls back to back without
one. So whoever first sees the run end early (the consumer leaving the run's
block, or a worker whose call failed or was cancelled) also sets this flag,
and every stage looks at it before it starts a call: after the stop, no call
starts, and no worker is started to start one.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from anyio.lowlevel import checkpoint_if_cancelled
from anyio.streams.memory import MemoryObjectSendStream

__all__ = ["Stop", "interrupted", "run_stage", "stopping"]


class Stop:
    """Whether the run is stopping; set once, never cleared."""

    __slots__ = ("_on_stop", "called")

    def __init__(self) -> None:
        self.called = False
        self._on_stop: list[Callable[[], object]] = []

    def on_stop(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` (sync, quick, never raising) at the stop."""
        self._on_stop.append(callback)

    def set(self) -> None:
        if self.called:
            return
        self.called = True
        callbacks, self._on_stop = self._on_stop, []
        for callback in callbacks:
            callback()

    async def wait_for_cancellation(self) -> None:
        """Park a worker that found the run stopping until its cancellation arrives."""
        assert self.called
        await anyio.sleep_forever()

    async def may_start(self) -> None:
        """Return only if a call may start now; else wait for the run's cancellation.

        For a task about to start a call after an await (a wait, a retry's
        delay, its own first step): the run may have stopped meanwhile, its
        cancellation still on its way; or its scope may have been cancelled
        from outside after the task was woken, which reaches the task only at
        a checkpoint (trio and anyio's asyncio deliver it there).
        """
        if self.called:
            await anyio.sleep_forever()
        await checkpoint_if_cancelled()


async def run_stage(
    body: Callable[[], Awaitable[None]], stop: Stop, output: MemoryObjectSendStream[Any]
) -> None:
    """Run a stage's ``body``; close the stage's ``output`` once it has ended normally.

    A failure or a cancellation sets the run's ``stop`` on its way out: the
    run is stopping. The output stays open then: after a failure the next
    stage must not take the missing rest for a normal end.
    """
    try:
        await body()
    except BaseException:
        stop.set()
        raise
    output.close()


def stopping() -> bool:
    """True in a task that is being cancelled: its run is stopping."""
    return anyio.current_effective_deadline() == -math.inf


def interrupted(exc: BaseException) -> bool:
    """True if ``exc`` was raised while a cancellation went through user code.

    A generator cancelled at an ``await`` runs its ``finally`` blocks with the
    cancellation in flight: what they raise has it as its ``__context__``.
    """
    cancelled = anyio.get_cancelled_exc_class()
    seen: set[int] = set()
    context = exc.__context__
    while context is not None and id(context) not in seen:
        if isinstance(context, cancelled):
            return True
        seen.add(id(context))
        context = context.__context__
    return False
