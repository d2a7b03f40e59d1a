"""The run's *stop* (api.md §6): the moment it begins to end early.

Cancelling the run's task group reaches each worker only at its next
checkpoint, and a stage's leader starts cheap calls back to back without
one. So whoever first sees the run end early (the consumer leaving the run's
block, or a worker whose call failed or was cancelled) also sets this flag,
and every stage looks at it before it starts a call: after the stop, no call
starts, and no worker is started to start one.
"""

from __future__ import annotations

import anyio

__all__ = ["Stop"]


class Stop:
    """Whether the run is stopping; set once, never cleared."""

    __slots__ = ("called",)

    def __init__(self) -> None:
        self.called = False

    def set(self) -> None:
        self.called = True

    async def wait_for_cancellation(self) -> None:
        """Park a worker that found the run stopping until its cancellation arrives."""
        assert self.called
        await anyio.sleep_forever()
