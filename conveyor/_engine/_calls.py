"""One call of a user's function, wrapped in the task's error policy.

The policy is a handler around each call, inside the worker: the retry loop,
the per-attempt deadline (an anyio cancel scope), skip or replace, or let the
exception escape so that the run's task group cancels everything.
Cancellation and other ``BaseException``s are never caught here.

:meth:`Caller.start` is the hot path. With no policy to apply it calls the
function and, when the call finishes without suspending, returns its output
entry directly; otherwise it returns a :class:`~._eager.Pending` that the
stage awaits (after handing its other work on, see ``_single``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from functools import partial
from types import CoroutineType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from ._eager import Pending, drive
from ._envelope import EMPTY
from ._notes import add_note, describe_item
from ._outputs import AWAIT, ITERATE, SCALAR, _kinds, entry_of, kind_of, settle_result
from ._ratelimit import RateLimit, RateLimiter

if TYPE_CHECKING:
    from ..error_handling import ErrorHandler, Failure, RetryConfig
    from ._instrument import StageHooks

__all__ = ["CallPolicy", "Caller"]


@dataclass(frozen=True)
class CallPolicy:
    """How a task treats failures; built once per task from its options."""

    on_error: str = "fail"  # "fail" | "skip_item" | "skip_batch"
    retry: RetryConfig | None = None  # None: one attempt
    timeout: float | None = None  # seconds per attempt
    handler: ErrorHandler | None = None
    # A RateLimit: a bucket of the stage's own in each run; a RateLimiter: shared.
    rate_limit: RateLimit | RateLimiter | None = None
    cost: Callable[[Any], float] | None = None  # tokens per call; None: 1

    @property
    def attempts(self) -> int:
        return 1 if self.retry is None else self.retry.max_attempts

    @property
    def is_plain(self) -> bool:
        """True when a failure simply fails the run and calls go unhindered:
        no retry, deadline, handler or rate limit."""
        return (
            self.attempts == 1
            and self.timeout is None
            and self.handler is None
            and self.on_error == "fail"
            and self.rate_limit is None
        )

    def delay_after(self, attempt: int, exc: Exception) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based),
        which raised ``exc``: what ``retry_after`` says, else the backoff."""
        assert self.retry is not None
        if self.retry.retry_after is not None:
            asked = self.retry.retry_after(exc)
            if asked is not None:  # the server's word, capped; never jittered
                return min(max(0.0, float(asked)), self.retry.max_delay)
        delay = self.retry.delay_after(attempt)
        if self.retry.jitter:
            delay = random.uniform(0.0, delay)  # "full jitter"
        return delay


class Caller:
    """Calls one task's function for one run, with its side inputs bound."""

    __slots__ = (
        "_bucket",
        "_call",
        "_hooks",
        "_limiter",
        "_plain",
        "_policy",
        "_record",
        "_takes_item",
        "args",
        "calls_failed",
        "calls_finished",
        "calls_retried",
        "calls_started",
        "func",
        "kwargs",
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
        hooks: StageHooks | None = None,
    ) -> None:
        self.name = name
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self._policy = policy
        self._record = record_failure
        self._limiter = thread_limiter
        self._takes_item = takes_item
        # Instruments that watch calls need the policy path (``_attempts``),
        # where every attempt passes the hook sites; the plain path has none.
        self._hooks = hooks
        self._plain = policy.is_plain and thread_limiter is None and hooks is None
        # Calls counted on the policy path (the plain path's are the stage's).
        self.calls_started = self.calls_finished = self.calls_failed = self.calls_retried = 0
        rate = policy.rate_limit
        self._bucket = RateLimiter(rate) if isinstance(rate, RateLimit) else rate
        if args or kwargs:
            self._call: Callable[[Any], Any] = partial(_with_side_inputs, func, args, kwargs)
        else:
            self._call = func

    # -- the hot path -----------------------------------------------------

    @property
    def plain_call(self) -> Callable[[Any], Any] | None:
        """The bare function when no policy applies: the stage may call it inline
        and pass any result that is not a plain value to :meth:`resume`."""
        return self._call if self._plain else None

    def start(self, value: Any) -> Any:
        """Start the call for ``value``: its output entry now, or a :class:`Pending`.

        Await a returned :class:`Pending` for the entry.
        """
        if not self._plain:
            return drive(self._attempts(value))
        try:
            result = self._call(value)
        except Exception as exc:
            raise self._failed(exc, value)  # noqa: B904 - the same exception, re-raised
        if _kinds.get(type(result)) == SCALAR:
            return result
        return self.resume(result, value)

    def resume(self, result: Any, value: Any) -> Any:
        """The entry for a plain call's ``result``, or a :class:`Pending` for it."""
        try:
            kind = _kinds.get(type(result))
            if kind == AWAIT and type(result) is CoroutineType:
                result = drive(result)
                if type(result) is Pending:
                    return drive(self._finish(result, value))
                kind = _kinds.get(type(result))
                if kind == SCALAR:
                    return result
            if kind is None:
                kind = kind_of(result)
            if kind <= ITERATE:
                return entry_of(result)
            return drive(self._finish(result, value))
        except Exception as exc:
            raise self._failed(exc, value)  # noqa: B904 - the same exception, re-raised

    def suspended(self, coro: Coroutine[Any, Any, Any], yielded: Any, value: Any) -> Pending[Any]:
        """A plain call's coroutine that suspended at ``yielded``: finish it later."""
        pending = drive(self._finish(Pending(coro, yielded), value))
        assert type(pending) is Pending
        return pending

    def failed(self, exc: Exception, value: Any) -> Exception:
        """``exc``, with a note naming this task and ``value``."""
        return self._failed(exc, value)

    async def _finish(self, result: Any, value: Any) -> Any:
        try:
            return await settle_result(result)
        except Exception as exc:
            raise self._failed(exc, value)  # noqa: B904 - the same exception, re-raised

    def _failed(self, exc: Exception, value: Any, attempts: int = 1) -> Exception:
        what = "item" if self._takes_item else "call"
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        add_note(
            exc, f"conveyor: task {self.name!r} failed{tries} on {what} {describe_item(value)}"
        )
        return exc

    async def source_result(self) -> Any:
        """Call a zero-input task once, as a pipeline's source."""
        try:
            result = self.func(*self.args, **self.kwargs)
            if hasattr(result, "__await__"):
                result = await result
            return result
        except Exception as exc:
            add_note(exc, f"conveyor: source task {self.name!r} failed")
            raise

    # -- the policy path --------------------------------------------------

    async def _call_once(self, value: Any) -> Any:
        if self._limiter is not None:
            call = partial(_call_materialized, self._call, value)
            result = await anyio.to_thread.run_sync(call, limiter=self._limiter)
        else:
            result = self._call(value)
        return await settle_result(result)

    async def _attempts(self, value: Any) -> Any:
        policy = self._policy
        hooks = self._hooks
        bucket = self._bucket
        if bucket is not None:
            cost = 1 if policy.cost is None else policy.cost(value)
        attempt = 0
        while True:
            attempt += 1
            if bucket is not None:
                await bucket.acquire(cost)  # every attempt, outside its deadline
            self.calls_started += 1
            call = hooks.start(value, attempt) if hooks is not None else None
            try:
                if policy.timeout is None:
                    result = await self._call_once(value)
                else:
                    with anyio.fail_after(policy.timeout):
                        result = await self._call_once(value)
            except Exception as exc:
                self.calls_failed += 1
                if hooks is not None and call is not None:
                    hooks.failed(call, exc)
                if (
                    policy.retry is not None
                    and attempt < policy.retry.max_attempts
                    and isinstance(exc, policy.retry.retry_on)
                ):
                    delay = policy.delay_after(attempt, exc)
                    self.calls_retried += 1
                    if hooks is not None and call is not None:
                        hooks.retried(call, delay)
                    await anyio.sleep(delay)
                    continue
                return await self._give_up(exc, value, attempt)
            except BaseException as exc:  # a cancellation: reported, never handled
                if hooks is not None and call is not None:
                    hooks.failed(call, exc)
                raise
            self.calls_finished += 1
            if hooks is not None and call is not None:
                hooks.finished(call)
            return result

    async def _give_up(self, exc: Exception, value: Any, attempts: int) -> Any:
        from ..error_handling import Failure

        policy = self._policy
        if policy.handler is not None:
            try:
                go_on, replacement = await policy.handler.handle_error(
                    exc, value, self.name, attempts
                )
            except Exception as handler_exc:
                what = f"{'item' if self._takes_item else 'call'} {describe_item(value)}"
                add_note(
                    handler_exc,
                    f"conveyor: the error handler of task {self.name!r} failed on {what}",
                )
                raise
            if go_on:
                return await settle_result(replacement)
        elif policy.on_error != "fail":
            self._record(Failure(item=value, exception=exc, task_name=self.name, attempts=attempts))
            return EMPTY
        raise self._failed(exc, value, attempts)


def _with_side_inputs(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], value: Any
) -> Any:
    return func(value, *args, **kwargs)


def _call_materialized(call: Callable[[Any], Any], value: Any) -> Any:
    """Run in a worker thread: call, and drain a sync generator there too."""
    result = call(value)
    if kind_of(result) == ITERATE:
        return list(result)
    return result
