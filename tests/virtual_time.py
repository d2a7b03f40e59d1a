"""An asyncio event loop with a virtual clock, the asyncio twin of trio's MockClock.

Whenever the loop would block waiting for its next timer, the clock jumps
straight to that timer instead. Timestamps are therefore exact and a test
that sleeps for seconds finishes at once. Only for code that does no real I/O
and uses no threads (those would be outrun by the clock).
"""

from __future__ import annotations

import asyncio
import selectors
from typing import Any


class _JumpingSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    def __init__(self) -> None:
        super().__init__()
        self.loop: VirtualTimeEventLoop | None = None

    def select(self, timeout: float | None = None) -> list[Any]:
        events = super().select(0)  # never block for real
        if not events and timeout and self.loop is not None:
            self.loop.advance(timeout)
        return events  # type: ignore[no-any-return]


class VirtualTimeEventLoop(asyncio.SelectorEventLoop):
    """``loop.time()`` starts at 0 and only moves when the loop would wait."""

    def __init__(self) -> None:
        selector = _JumpingSelector()
        super().__init__(selector)
        selector.loop = self
        self._now = 0.0

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds
