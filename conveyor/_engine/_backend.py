"""Everything that differs between asyncio and trio, in one place.

The rest of conveyor is plain anyio. Only the host of plain ``async for``
iteration needs three things anyio does not offer: starting a task outside any
task group (it must outlive the ``__anext__`` call that starts it), asking
the event loop, from a garbage-collection callback, to run a function soon,
and handing the loop an error that nobody is left to receive.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

__all__ = ["Loop", "current_clock", "current_loop", "current_loop_key"]

# Detached asyncio tasks, referenced until done so that they are not collected.
_running_hosts: set[asyncio.Task[Any]] = set()


class Loop:
    """The running event loop, as far as the plain-iteration host needs it."""

    __slots__ = ("_call_soon", "_report", "_spawn")

    def __init__(
        self,
        spawn: Callable[[Callable[[], Awaitable[None]], contextvars.Context], None],
        call_soon: Callable[[Callable[[], object]], None],
        report: Callable[[str, BaseException], None],
    ) -> None:
        self._spawn = spawn
        self._call_soon = call_soon
        self._report = report

    def report(self, message: str, error: BaseException) -> None:
        """Hand ``error``, which nobody is left to receive, to the event loop.

        asyncio: the loop's exception handler (``loop.call_exception_handler``),
        which logs it unless the program set its own. trio has no such handler:
        the error is logged at ERROR level on the ``conveyor`` logger.
        """
        self._report(message, error)

    def spawn_detached(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Start ``fn()`` as a task of its own, in a copy of the current context.

        ``fn`` must not raise: nothing would be there to see it.
        """
        self._spawn(fn, contextvars.copy_context())

    def call_soon_threadsafe(self, fn: Callable[[], object]) -> None:
        """Run ``fn()`` on the loop soon; a no-op once the loop is gone."""
        try:
            self._call_soon(fn)
        except RuntimeError:  # the loop is closed or the run is over
            pass


def _trio_loop() -> Loop | None:
    trio = sys.modules.get("trio")
    if trio is None:
        return None
    try:
        token = trio.lowlevel.current_trio_token()
    except RuntimeError:
        return None

    def spawn(fn: Callable[[], Awaitable[None]], context: contextvars.Context) -> None:
        trio.lowlevel.spawn_system_task(fn, name="conveyor iteration host", context=context)

    return Loop(spawn, token.run_sync_soon, _log)


def _asyncio_loop() -> Loop:
    loop = asyncio.get_running_loop()

    def spawn(fn: Callable[[], Awaitable[None]], context: contextvars.Context) -> None:
        coro: Coroutine[Any, Any, None] = fn()  # type: ignore[assignment]
        task: asyncio.Task[None]
        if sys.version_info >= (3, 11):
            task = loop.create_task(coro, name="conveyor iteration host", context=context)
        else:  # pragma: no cover - create_task copies the context it is called in
            task = context.run(loop.create_task, coro)
        _running_hosts.add(task)
        task.add_done_callback(_running_hosts.discard)

    def call_soon(fn: Callable[[], object]) -> None:
        loop.call_soon_threadsafe(fn)

    def report(message: str, error: BaseException) -> None:
        loop.call_exception_handler({"message": message, "exception": error})

    return Loop(spawn, call_soon, report)


def _log(message: str, error: BaseException) -> None:
    logging.getLogger("conveyor").error(message, exc_info=error)


def current_loop() -> Loop:
    """The loop of the calling task, trio's or asyncio's."""
    loop = _trio_loop()
    if loop is not None:
        return loop
    try:
        return _asyncio_loop()
    except RuntimeError:
        raise RuntimeError("conveyor needs a running asyncio or trio event loop") from None


def current_clock() -> Callable[[], float]:
    """The running backend's clock, as a function (``anyio.current_time()`` looks
    the backend up on every call; instruments read the clock twice per call).

    The function may also be called from other threads (a metrics exporter's),
    and after the run (it reads the clock object, not the running loop).
    """
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            clock: Callable[[], float] = trio.lowlevel.current_clock().current_time
        except RuntimeError:
            pass
        else:
            return clock
    return asyncio.get_running_loop().time


def current_loop_key() -> object:
    """An object that identifies the running event loop (trio's or asyncio's)."""
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            return trio.lowlevel.current_trio_token()
        except RuntimeError:
            pass
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError("conveyor needs a running asyncio or trio event loop") from None


def cancellation_check() -> Callable[[], Awaitable[None]]:
    """The running backend's ``checkpoint_if_cancelled``, looked up once.

    ``anyio.lowlevel.checkpoint_if_cancelled()`` finds the backend on every
    call; a stage asks after every wait, so it resolves the function once per
    run (anyio's own asyncio implementation, or trio's).
    """
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_trio_token()
        except RuntimeError:
            pass
        else:
            check: Callable[[], Awaitable[None]] = trio.lowlevel.checkpoint_if_cancelled
            return check
    from anyio._backends._asyncio import AsyncIOBackend

    return AsyncIOBackend.checkpoint_if_cancelled
