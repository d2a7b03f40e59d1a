"""One call of a user's function, wrapped in the task's error policy.

The policy is a handler around each call, inside the worker: the retry loop,
the per-attempt deadline (an anyio cancel scope), skip or replace, or let the
exception escape so that the run's task group cancels everything.
Cancellation and other ``BaseException``s are never caught here.

:meth:`Caller.start` is the hot path. With no policy to apply it calls the
function and, when the call finishes without suspending, returns the output
list directly; otherwise it returns an awaitable that the stage awaits (after
handing its other work on, see ``_single``).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from functools import partial
from types import CoroutineType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from ._eager import Pending, drive
from ._notes import add_note, describe_item
from ._outputs import outputs_of

if TYPE_CHECKING:
    from ..error_handling import ErrorHandler, Failure, RetryConfig

__all__ = ["CallPolicy", "Caller", "Outcome"]

#: What :meth:`Caller.start` returns: the outputs, or something to await for them.
Outcome = list[Any] | Awaitable[list[Any]]


@dataclass(frozen=True)
class CallPolicy:
    """How a task treats failures; built once per task from its options."""

    on_error: str = "fail"  # "fail" | "skip_item" | "skip_batch"
    retry: RetryConfig | None = None  # None: one attempt
    timeout: float | None = None  # seconds per attempt
    handler: ErrorHandler | None = None

    @property
    def attempts(self) -> int:
        return 1 if self.retry is None else self.retry.max_attempts

    @property
    def is_plain(self) -> bool:
        """True when a failure simply fails the run: no retry, deadline or handler."""
        return (
            self.attempts == 1
            and self.timeout is None
            and self.handler is None
            and self.on_error == "fail"
        )

    def delay_after(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        assert self.retry is not None
        delay = self.retry.delay_after(attempt)
        if self.retry.jitter:
            delay = random.uniform(0.0, delay)  # "full jitter"
        return delay


class Caller:
    """Calls one task's function for one run, with its side inputs bound."""

    __slots__ = (
        "_args",
        "_func",
        "_kwargs",
        "_limiter",
        "_plain",
        "_policy",
        "_record",
        "_takes_item",
        "name",
    )

    def __init__(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        name: str,
        policy: CallPolicy,
        record_failure: Callable[[Failure], None],
        thread_limiter: anyio.CapacityLimiter | None = None,
        takes_item: bool = True,
    ) -> None:
        self.name = name
        self._func = func
        self._args = args
        self._kwargs = kwargs
        self._policy = policy
        self._record = record_failure
        self._limiter = thread_limiter
        self._takes_item = takes_item
        self._plain = policy.is_plain and thread_limiter is None

    # -- the hot path -----------------------------------------------------

    def start(self, value: Any) -> Outcome:
        """Start the call for ``value``: its outputs now, or an awaitable of them."""
        if not self._plain:
            return drive(self._attempts(value))  # type: ignore[return-value]
        try:
            if self._takes_item:
                result = self._func(value, *self._args, **self._kwargs)
            else:
                result = self._func(*self._args, **self._kwargs)
            if type(result) is CoroutineType:
                result = drive(result)
                if type(result) is Pending:
                    return self._finish(result, value)
            elif hasattr(result, "__await__"):
                return self._finish(result, value)
            out = outputs_of(result)
            if type(out) is list:
                return out
            out = drive(out)  # type: ignore[arg-type]
            if type(out) is Pending:
                return self._finish(out, value)
            return out  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._failed(exc, value)  # noqa: B904 - the same exception, re-raised

    async def _finish(self, awaitable: Awaitable[Any], value: Any) -> list[Any]:
        try:
            out = outputs_of(await awaitable)
            if type(out) is not list:
                out = await out  # type: ignore[misc]
            return out  # type: ignore[return-value]
        except Exception as exc:
            raise self._failed(exc, value)  # noqa: B904 - the same exception, re-raised

    def _failed(self, exc: Exception, value: Any, attempts: int = 1) -> Exception:
        what = "batch" if isinstance(value, list) and not self._takes_item else "item"
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        add_note(exc, f"conveyor: task {self.name!r} failed{tries} on {what} {describe_item(value)}")
        return exc

    async def source_result(self) -> Any:
        """Call a zero-input task once, as a pipeline's source."""
        try:
            result = self._func(*self._args, **self._kwargs)
            if hasattr(result, "__await__"):
                result = await result
            return result
        except Exception as exc:
            add_note(exc, f"conveyor: source task {self.name!r} failed")
            raise

    # -- the policy path --------------------------------------------------

    async def _call_once(self, value: Any) -> list[Any]:
        args = (value, *self._args) if self._takes_item else self._args
        if self._limiter is not None:
            call = partial(_call_materialized, self._func, args, self._kwargs)
            result = await anyio.to_thread.run_sync(call, limiter=self._limiter)
        else:
            result = self._func(*args, **self._kwargs)
            if hasattr(result, "__await__"):
                result = await result
        out = outputs_of(result)
        if type(out) is not list:
            out = await out  # type: ignore[misc]
        return out  # type: ignore[return-value]

    async def _attempts(self, value: Any) -> list[Any]:
        policy = self._policy
        attempt = 0
        while True:
            attempt += 1
            try:
                if policy.timeout is None:
                    return await self._call_once(value)
                with anyio.fail_after(policy.timeout):
                    return await self._call_once(value)
            except Exception as exc:
                if (
                    policy.retry is not None
                    and attempt < policy.retry.max_attempts
                    and isinstance(exc, policy.retry.retry_on)
                ):
                    await anyio.sleep(policy.delay_after(attempt))
                    continue
                return await self._give_up(exc, value, attempt)

    async def _give_up(self, exc: Exception, value: Any, attempts: int) -> list[Any]:
        from ..error_handling import Failure

        policy = self._policy
        if policy.handler is not None:
            go_on, replacement = await policy.handler.handle_error(exc, value, self.name, attempts)
            if go_on:
                out = outputs_of(replacement)
                if type(out) is not list:
                    out = await out  # type: ignore[misc]
                return out  # type: ignore[return-value]
        elif policy.on_error != "fail":
            self._record(Failure(item=value, exception=exc, task_name=self.name, attempts=attempts))
            return []
        raise self._failed(exc, value, attempts)


def _call_materialized(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Run in a worker thread: call, and drain a sync generator there too."""
    result = func(*args, **kwargs)
    out = outputs_of(result)
    if isinstance(out, Coroutine):
        out.close()
        return result  # an async generator: drained on the event loop
    return out
