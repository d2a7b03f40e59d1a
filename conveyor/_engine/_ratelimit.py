"""Rate limits: a token bucket on anyio primitives, for asyncio and trio.

:class:`RateLimit` describes a limit (a value, like ``RetryConfig``);
:class:`RateLimiter` enforces one and may be shared by any number of stages,
pipelines and concurrent runs on one event loop.

The bucket is kept as a "theoretical arrival time" (the generic cell rate
algorithm): ``_full_at`` is the moment the bucket is full again, so the level
at time ``t`` is ``burst - max(0, _full_at - t) / interval`` tokens. A request
of ``cost`` tokens may go once the level reaches ``cost``. Nothing ticks:
a waiter computes the moment it may go and sleeps until then, so the limiter
never busy-waits and is exact under a virtual clock.

Waiters are served first come, first served. Only the head of the queue
sleeps on the clock; the others wait on an event until they are the head.
A token is taken only at the instant a waiter is served, without a
checkpoint in between, so a waiter cancelled at any point takes none.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import anyio
from anyio.lowlevel import checkpoint_if_cancelled

from ._backend import current_loop_key

__all__ = ["RateLimit", "RateLimiter", "RateLimiterStatistics"]

#: Clock slack: timers may fire a hair before their deadline (asyncio rounds
#: to its clock resolution), and float sums of intervals carry rounding.
_SLACK = 1e-9

#: How late a wake-up may be and still be charged at the moment its tokens
#: were due (at least one interval): event loops wait for timers in whole
#: milliseconds (epoll), and a busy machine adds scheduling delays.
LATE_WAKE_ALLOWANCE = 0.005


def _check_positive(name: str, value: object, *, integer: bool = False) -> None:
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        what = "a positive int" if integer else "a positive number"
        raise TypeError(f"{name} must be {what}, got {value!r}")
    assert isinstance(value, (int, float))
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be > 0 (and finite), got {value!r}")


@dataclass(frozen=True)
class RateLimit:
    """At most ``rate`` tokens per ``per`` seconds, and ``burst`` at once.

    A call costs one token unless the task sets ``cost=``. With the default
    ``burst=1`` calls are paced strictly, one every ``per / rate`` seconds;
    a larger ``burst`` lets that many go at once after a quiet spell. Over
    any span of ``T`` seconds at most ``rate * T / per + burst`` tokens are
    granted.

    Given as ``single_task(rate_limit=RateLimit(...))`` (or on a batch task),
    the limit is the stage's own, in each run separately. To share one quota
    between stages, pipelines and concurrent runs, pass a
    :class:`RateLimiter` instead.

    Raises:
        TypeError, ValueError: ``rate`` or ``per`` not a positive number, or
            ``burst`` not a positive int.
    """

    rate: float
    per: float = 1.0
    burst: int = 1

    def __post_init__(self) -> None:
        _check_positive("rate", self.rate)
        _check_positive("per", self.per)
        _check_positive("burst", self.burst, integer=True)

    @property
    def interval(self) -> float:
        """Seconds per token: ``per / rate``."""
        return self.per / self.rate


@dataclass(frozen=True)
class RateLimiterStatistics:
    """A snapshot of a :class:`RateLimiter`.

    ``tokens``: tokens available now (negative while a call that cost more
    than ``burst`` is being paid back). ``waiting``: tasks waiting for
    tokens. ``granted``: tokens granted so far. ``paused_for``: seconds until
    a :meth:`~RateLimiter.pause` ends (0 when not paused).
    """

    tokens: float
    waiting: int
    granted: float
    paused_for: float


class _Waiter:
    __slots__ = ("cost", "head", "since")

    def __init__(self, cost: float, since: float) -> None:
        self.cost = cost
        self.since = since  # when it asked: it may not be served earlier
        self.head: anyio.Event | None = None  # set when it becomes the head


class RateLimiter:
    """A token bucket shared by every stage, pipeline and run that uses it.

    ``RateLimiter(rate, per=1.0, burst=1)`` or ``RateLimiter(RateLimit(...))``.
    Pass it as ``rate_limit=`` to any number of tasks: every call of every
    stage, in every run, takes its tokens from this one bucket, so one API
    quota holds across all of them. Every attempt takes tokens: retries count.

    Contract:

    - Waiters are served in the order they asked (first come, first served);
      a costly request at the head makes the cheaper ones behind it wait.
    - A waiter that is cancelled takes no token, and neither does a call
      that its run's stop prevents after the tokens were granted.
    - Times come from the event loop's clock (``anyio.current_time()``), so
      the limiter is exact under trio's ``MockClock`` and other virtual
      clocks, and never busy-waits: a waiter sleeps until the moment its
      tokens are there.
    - A waiter that the event loop wakes a little late is charged at the
      moment its tokens were due, up to ``max(per / rate, 5 ms)`` back, so
      that timer granularity and scheduling delays do not lower the rate.
      On a real clock a span of ``T`` seconds may therefore see a little
      more than ``rate * T / per + burst``: one call more, or 5 ms worth of
      calls at high rates. Under a virtual clock the bound is exact.
    - A request costing more than ``burst`` waits for a full bucket and then
      takes the rest on credit: the requests after it wait until it is paid
      back. The average rate still holds.
    - Per event loop: the limiter belongs to the event loop that uses it.
      Used from another loop while nobody waits (a new ``anyio.run``), it
      starts over with a full bucket; used from two loops at once, it raises
      ``RuntimeError``.

    Raises:
        TypeError, ValueError: as :class:`RateLimit` does.
    """

    def __init__(self, rate: float | RateLimit, per: float = 1.0, burst: int = 1) -> None:
        limit = rate if isinstance(rate, RateLimit) else RateLimit(rate, per, burst)
        self._limit = limit
        self._interval = limit.interval
        self._allowance = max(limit.interval, LATE_WAKE_ALLOWANCE)
        self._burst = limit.burst
        self._full_at = -math.inf  # the bucket is full from this moment on
        self._paused_until = -math.inf
        self._queue: deque[_Waiter] = deque()
        self._granted = 0.0
        self._loop: object = None

    @property
    def limit(self) -> RateLimit:
        """The limit this limiter enforces."""
        return self._limit

    def __repr__(self) -> str:
        limit = self._limit
        return f"RateLimiter(rate={limit.rate!r}, per={limit.per!r}, burst={limit.burst!r})"

    # -- the bucket ---------------------------------------------------------

    def _due(self, cost: float) -> float:
        """The earliest moment ``cost`` tokens are there (ignoring the queue)."""
        if cost <= self._burst:
            due = self._full_at - (self._burst - cost) * self._interval
        else:
            due = self._full_at  # a full bucket, the rest on credit
        return max(due, self._paused_until)

    def _take(self, cost: float, at: float) -> None:
        self._full_at = max(self._full_at, at) + cost * self._interval
        self._granted += cost

    def _give_back(self, cost: float) -> None:
        """Return ``cost`` tokens taken for a call that did not start (the run
        stopped between the grant and the call): a stop costs no quota."""
        self._full_at -= cost * self._interval
        self._granted -= cost

    def _enter_loop(self) -> None:
        loop = current_loop_key()
        if loop is self._loop:
            return
        if self._queue:
            raise RuntimeError(
                "a RateLimiter belongs to one event loop; it is in use by another one"
            )
        # A new loop has a clock of its own: start over with a full bucket.
        self._loop = loop
        self._full_at = self._paused_until = -math.inf

    # -- the public operations ---------------------------------------------

    async def acquire(self, cost: float = 1) -> None:
        """Wait until ``cost`` tokens are there, then take them.

        A cancel point. If cancelled while waiting, no token is taken.

        Args:
            cost: tokens to take, a number >= 0 (default 1).

        Raises:
            TypeError, ValueError: ``cost`` not a number >= 0.
            RuntimeError: the limiter is in use by another event loop.
        """
        cost = _check_cost(cost)
        await checkpoint_if_cancelled()
        self._enter_loop()
        now = anyio.current_time()
        if not self._queue and self._due(cost) <= now + _SLACK:
            self._take(cost, now)
            return
        waiter = _Waiter(cost, now)
        self._queue.append(waiter)
        try:
            await self._wait_turn(waiter)
        finally:
            self._leave(waiter)

    async def _wait_turn(self, waiter: _Waiter) -> None:
        while self._queue[0] is not waiter:
            event = waiter.head = anyio.Event()
            await event.wait()
        while True:
            due = max(self._due(waiter.cost), waiter.since)
            now = anyio.current_time()
            if due <= now + _SLACK:
                # Charged at the moment the tokens were due, not when the
                # loop got round to waking us, so that scheduling delays do
                # not add up over thousands of calls; but only so far back,
                # so that a long stall is not made up for by a clump of calls.
                self._take(waiter.cost, min(now, max(due, now - self._allowance)))
                return
            await anyio.sleep_until(due)  # a pause() may move `due`: look again

    def _leave(self, waiter: _Waiter) -> None:
        queue = self._queue
        was_head = queue[0] is waiter
        queue.remove(waiter)
        if was_head and queue:
            # The next in line becomes the head; it starts its own clock.
            head = queue[0].head
            if head is not None:
                head.set()

    def pause(self, seconds: float) -> None:
        """Grant no tokens for the next ``seconds`` seconds, to anyone.

        Meant for a server's "429 Too Many Requests, retry after N seconds":
        every stage and run that shares this limiter holds back. Pauses do
        not shorten each other: the later end wins. The bucket refills while
        paused (up to ``burst``). Call it from the event loop (for example
        from a task's ``retry_after`` function).

        Args:
            seconds: a number >= 0.

        Raises:
            TypeError, ValueError: ``seconds`` not a number >= 0.
        """
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise TypeError(f"seconds must be a number >= 0, got {seconds!r}")
        if not seconds >= 0:
            raise ValueError(f"seconds must be >= 0, got {seconds!r}")
        self._enter_loop()
        self._paused_until = max(self._paused_until, anyio.current_time() + seconds)

    def statistics(self) -> RateLimiterStatistics:
        """A snapshot: tokens available, waiters, tokens granted, pause left.

        Call it from the event loop that uses the limiter.
        """
        now = anyio.current_time() if self._loop is not None else 0.0
        behind = max(0.0, self._full_at - now) / self._interval
        return RateLimiterStatistics(
            tokens=self._burst - behind,
            waiting=len(self._queue),
            granted=self._granted,
            paused_for=max(0.0, self._paused_until - now),
        )


def _check_cost(cost: object) -> float:
    if isinstance(cost, bool) or not isinstance(cost, (int, float)):
        raise TypeError(f"a rate limit cost must be a number >= 0, got {cost!r}")
    if not (cost >= 0 and math.isfinite(cost)):
        raise ValueError(f"a rate limit cost must be a finite number >= 0, got {cost!r}")
    return cost
