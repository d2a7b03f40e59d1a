"""Side inputs: extra arguments a task's function receives after the item.

Resolved once per run, before any item is processed: a plain value is passed
as is; a coroutine object is awaited once (its result is kept for later runs,
since a coroutine can only be awaited once); a coroutine function is called
and awaited for every run; a conveyor stream gives its first item; any other
async iterator is passed as is.
"""

from __future__ import annotations

import inspect
from collections.abc import Coroutine
from typing import Any

import anyio

__all__ = ["AwaitOnce", "resolve", "resolve_all", "wrap"]


class AwaitOnce:
    """A coroutine given as a side input: awaited by the first run that needs it."""

    __slots__ = ("_coro", "_done", "_lock", "_value")

    def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
        self._coro: Coroutine[Any, Any, Any] | None = coro
        self._done = False
        self._value: Any = None
        self._lock: anyio.Lock | None = None

    async def get(self) -> Any:
        if self._done:
            return self._value
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            if not self._done:
                assert self._coro is not None
                coro, self._coro = self._coro, None
                self._value = await coro
                self._done = True
        return self._value

    def close(self) -> None:
        """Close a coroutine that no run ever awaited (no 'never awaited' warning)."""
        if self._coro is not None and not self._done:
            self._coro.close()

    def __del__(self) -> None:
        self.close()


def wrap(value: Any) -> Any:
    """How a side input given to ``with_inputs`` is stored.

    Coroutines and conveyor streams can be consumed only once, so the first
    run resolves them and later runs reuse the value.
    """
    from ..stream import AsyncStream  # the public stream class

    if inspect.iscoroutine(value):
        return AwaitOnce(value)
    if isinstance(value, AsyncStream):
        return AwaitOnce(value.first())
    return value


async def resolve(value: Any) -> Any:
    """The value a side input stands for in one run."""
    from ..stream import AsyncStream  # the public stream class

    if isinstance(value, AwaitOnce):
        return await value.get()
    if inspect.iscoroutinefunction(value):
        return await value()
    if isinstance(value, AsyncStream):
        return await value.first()
    return value


async def resolve_all(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Resolve every side input of one stage for one run."""
    if not args and not kwargs:
        return args, kwargs
    resolved_args = tuple([await resolve(arg) for arg in args])
    resolved_kwargs = {key: await resolve(value) for key, value in kwargs.items()}
    return resolved_args, resolved_kwargs
