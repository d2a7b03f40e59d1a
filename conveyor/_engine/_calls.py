"""One call of a user's function, wrapped in the task's error policy.

The policy is a handler around each call, inside the worker: the retry loop,
the per-attempt deadline (an anyio cancel scope), skip or replace, or let the
exception escape so that the run's task group cancels everything.
Cancellation and other ``BaseException``s are never caught here.

Every call runs in its own copy of the run's starting context (``context``),
as a task would: a context variable one call sets is never seen by another.
The attempts of one item's call share that copy.

:meth:`Caller.start` is the hot path. With no policy to apply it calls the
function and, when the call finishes without suspending, returns its output
entry directly; otherwise it returns a :class:`~._eager.Pending` that the
stage awaits (after handing its other work on, see ``_single``). A result
that expands into several values comes back as an
:class:`~._outputs.Expansion`, which the stage streams (see ``_expand``);
a failure part-way through an expansion comes back here, to
:meth:`Caller.expansion_failed`.
"""

from __future__ import annotations

import contextvars
import inspect
import random
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass
from functools import partial
from types import CoroutineType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from ._eager import InContext, Pending, drive
from ._envelope import EMPTY
from ._notes import add_note, describe_item
from ._outputs import AWAIT, SCALAR, Expansion, _kinds, entry_of, kind_of, settle_result
from ._ratelimit import RateLimit, RateLimiter
from ._stop import Stop

if TYPE_CHECKING:
    from ..error_handling import ErrorHandler, Failure, RetryConfig
    from ._instrument import StageHooks

__all__ = ["CallPolicy", "Caller", "cost_of", "give_up"]


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

    def may_retry(self, exc: Exception, attempt: int) -> bool:
        """True when attempt number ``attempt`` (1-based), which raised ``exc``,
        may be followed by another."""
        retry = self.retry
        return (
            retry is not None and attempt < retry.max_attempts and isinstance(exc, retry.retry_on)
        )

    def rate_limiter(self) -> RateLimiter | None:
        """The bucket calls take tokens from in one run: a ``RateLimit``'s own
        (a new one per run), or the shared ``RateLimiter``; None without a limit."""
        rate = self.rate_limit
        return RateLimiter(rate) if isinstance(rate, RateLimit) else rate

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
        "_stop",
        "_takes_item",
        "args",
        "calls_failed",
        "calls_finished",
        "calls_retried",
        "calls_started",
        "context",
        "coroutine_function",
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
        context: contextvars.Context | None = None,
        hooks: StageHooks | None = None,
        stop: Stop | None = None,
    ) -> None:
        self.name = name
        #: The run's stop flag: a call whose wait ends after it does not start.
        self._stop = stop if stop is not None else Stop()
        #: The run's starting context: each call runs in a copy of it.
        self.context = context if context is not None else contextvars.copy_context()
        #: True when calling the function only makes a coroutine (runs none of its code).
        self.coroutine_function = inspect.iscoroutinefunction(func)
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
        # Calls counted here on the policy path; the plain path's, in bulk by the
        # stage that makes them (see resume).
        self.calls_started = self.calls_finished = self.calls_failed = self.calls_retried = 0
        self._bucket = policy.rate_limiter()
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
        """Start the call for ``value``: its output entry now, an
        :class:`~._outputs.Expansion`, or a :class:`Pending` for either."""
        context = self.context.copy()
        if not self._plain:
            return drive(self._attempts(value, context), context)
        self.calls_started += 1
        try:
            result = context.run(self._call, value)
        except Exception as exc:
            raise self.failed(exc, value)  # noqa: B904 - the same exception, re-raised
        if _kinds.get(type(result)) == SCALAR:
            self.calls_finished += 1
            return result
        entry = self.resume(result, value, context)
        if type(entry) is not Pending and type(entry) is not Expansion:
            self.calls_finished += 1  # (a Pending or an Expansion counts itself at its end)
        return entry

    def resume(self, result: Any, value: Any, context: contextvars.Context) -> Any:
        """The entry for a plain call's ``result`` (the call ran in ``context``): an
        entry, an :class:`~._outputs.Expansion`, or a :class:`Pending` for either.

        Counting the plain path's calls: whoever starts a call counts it
        started, and finished when it returns an entry here; a Pending or an
        Expansion counts the call's end itself; :meth:`failed` counts failures.
        """
        try:
            kind = _kinds.get(type(result))
            if kind == AWAIT and type(result) is CoroutineType:
                coro = result
                try:
                    yielded = context.run(coro.send, None)
                except StopIteration as stop:
                    result = stop.value
                else:
                    return self.suspended(coro, yielded, value, context)
                kind = _kinds.get(type(result))
                if kind == SCALAR:
                    return result
            if kind is None:
                kind = kind_of(result)
            if kind == AWAIT:
                return drive(self._finish(result, value, context), context)
            entry = entry_of(result, value, 1, context)
        except Exception as exc:
            raise self.failed(exc, value)  # noqa: B904 - the same exception, re-raised
        if type(entry) is Expansion:
            entry.counted = True  # the call lasts until its generator ends
        return entry

    def suspended(
        self,
        coro: Coroutine[Any, Any, Any],
        yielded: Any,
        value: Any,
        context: contextvars.Context,
    ) -> Pending[Any]:
        """A plain call's coroutine that suspended at ``yielded``: finish it later.

        Only the outer driver enters ``context`` (a context cannot be entered twice).
        """
        rest = _rest_of_plain_call(self, coro, yielded, value, context)
        return Pending(coro, yielded, context, rest)

    def failed(self, exc: Exception, value: Any) -> Exception:
        """A plain call failed: count it; ``exc``, with a note naming this task and ``value``."""
        self.calls_failed += 1
        return self._failed(exc, value)

    def failed_closing(self, exc: Exception, value: Any) -> Exception:
        """``exc``, raised by the call's generator while it was closed, noted so."""
        what = "item" if self._takes_item else "call"
        add_note(
            exc,
            f"conveyor: task {self.name!r} failed on {what} {describe_item(value)} "
            "while it was being closed",
        )
        return exc

    def finished(self, result: Any, value: Any, context: contextvars.Context) -> Any:
        """A suspended plain call returned ``result``, not a plain value (those
        :func:`_rest_of_plain_call` settles itself): an awaitable of its entry."""
        return InContext(self._finish(result, value, context), context)

    async def _finish(self, result: Any, value: Any, context: contextvars.Context) -> Any:
        try:
            entry = await settle_result(result, value, 1, context)
        except Exception as exc:
            raise self.failed(exc, value)  # noqa: B904 - the same exception, re-raised
        if type(entry) is Expansion:
            entry.counted = True  # the call lasts until its generator ends
        else:
            self.calls_finished += 1
        return entry

    def _failed(self, exc: Exception, value: Any, attempts: int = 1) -> Exception:
        return noted(exc, self.name, self._what, value, attempts)

    @property
    def _what(self) -> str:
        """What a call is called on, in notes: an item, or nothing (a source's call)."""
        return "item" if self._takes_item else "call"

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

    @property
    def timeout(self) -> float | None:
        """Seconds an attempt may take (for a generator: each wait for a value), or None."""
        return self._policy.timeout

    @property
    def thread_limiter(self) -> anyio.CapacityLimiter | None:
        """The limiter of the worker threads calls run in, or None: on the event loop."""
        return self._limiter

    async def _call_once(self, value: Any, attempt: int, context: contextvars.Context) -> Any:
        if self._limiter is not None:
            # On a deadline the thread is abandoned and its result discarded.
            result = await anyio.to_thread.run_sync(
                partial(self._call, value),
                limiter=self._limiter,
                abandon_on_cancel=self._policy.timeout is not None,
            )
        else:
            result = self._call(value)
        return await settle_result(result, value, attempt, context)

    async def _attempts(self, value: Any, context: contextvars.Context, attempt: int = 1) -> Any:
        """Try the call from attempt number ``attempt`` on; apply the policy at the end.

        Runs in ``context``, the call's own (see the module docstring).
        """
        policy = self._policy
        hooks = self._hooks
        bucket = self._bucket
        if bucket is not None:
            cost = cost_of(policy, value, self.name, self._what)
        while True:
            if bucket is not None:
                await bucket.acquire(cost)  # every attempt, outside its deadline
                try:
                    await self._stop.may_start()  # (the wait may end as the run stops)
                except BaseException:
                    bucket._give_back(cost)  # the call does not start
                    raise
            elif attempt > 1:
                await self._stop.may_start()  # (the retry's delay may end as the run stops)
            self.calls_started += 1
            call = hooks.start(value, attempt) if hooks is not None else None
            try:
                if policy.timeout is None:
                    result = await self._call_once(value, attempt, context)
                else:
                    with anyio.fail_after(policy.timeout):
                        result = await self._call_once(value, attempt, context)
            except Exception as exc:
                self.calls_failed += 1
                if hooks is not None and call is not None:
                    hooks.failed(call, exc)
                if policy.may_retry(exc, attempt):
                    delay = policy.delay_after(attempt, exc)
                    self.calls_retried += 1
                    if hooks is not None and call is not None:
                        hooks.retried(call, delay)
                    await anyio.sleep(delay)
                    attempt += 1
                    continue
                return await self._give_up(exc, value, attempt, context)
            except BaseException as exc:  # a cancellation: reported, never handled
                if hooks is not None and call is not None:
                    hooks.failed(call, exc)
                raise
            if type(result) is Expansion:  # the call lasts until its generator ends
                result.counted, result.call = True, call
                return result
            self.calls_finished += 1
            if hooks is not None and call is not None:
                hooks.finished(call)
            return result

    async def expansion_failed(self, exc: Exception, expansion: Expansion, passed_on: int) -> Any:
        """An expansion raised ``exc`` after passing ``passed_on`` values on.

        Returns what the call stands for from now on: a new
        :class:`~._outputs.Expansion` or an entry (a retry, or the error
        handler's replacement; :data:`~._envelope.EMPTY` when skipped), or
        raises ``exc`` to fail the run. A call is retried only while it has
        passed no value on, so that no value is ever made twice.
        """
        value, attempt, context = expansion.value, expansion.attempt, expansion.context
        self._expansion_ended(expansion, exc)
        if passed_on == 0 and self._policy.may_retry(exc, attempt):
            delay = self._policy.delay_after(attempt, exc)
            if expansion.counted:
                self.calls_retried += 1
                if self._hooks is not None and expansion.call is not None:
                    self._hooks.retried(expansion.call, delay)
            await anyio.sleep(delay)
            return await InContext(self._attempts(value, context, attempt + 1), context)
        return await InContext(self._give_up(exc, value, attempt, context, passed_on), context)

    def expansion_finished(self, expansion: Expansion, paused: float) -> None:
        """An expansion's generator ended: its call is over.

        ``paused``: seconds it waited for its values to drain (backpressure),
        reported apart from the call's duration.
        """
        if expansion.call is not None:
            expansion.call.paused = paused
        self._expansion_ended(expansion, None)

    def _expansion_ended(self, expansion: Expansion, error: BaseException | None) -> None:
        """Count and report the end of an expansion's call (once)."""
        if not expansion.counted:
            return
        expansion.counted = False
        hooks, call = self._hooks, expansion.call
        if error is None:
            self.calls_finished += 1
            if hooks is not None and call is not None:
                hooks.finished(call)
            return
        if isinstance(error, Exception):
            self.calls_failed += 1
        if hooks is not None and call is not None:
            hooks.failed(call, error)

    def expansion_cancelled(self, expansion: Expansion, error: BaseException) -> None:
        """An expansion ended by a cancellation (the run's stop) or a fatal error."""
        self._expansion_ended(expansion, error)

    async def _give_up(
        self,
        exc: Exception,
        value: Any,
        attempts: int,
        context: contextvars.Context,
        passed_on: int = 0,
    ) -> Any:
        replaced, entry = await give_up(
            self._policy,
            exc,
            value,
            attempts,
            name=self.name,
            record=self._record,
            what=self._what,
            passed_on=passed_on,
        )
        if replaced:
            return await settle_result(entry, value, attempts, context)
        return entry


def _rest_of_plain_call(
    caller: Caller,
    coro: Coroutine[Any, Any, Any],
    yielded: Any,
    value: Any,
    context: contextvars.Context,
) -> Generator[Any, Any, Any]:
    """The rest of a plain call that suspended at ``yielded``, as one generator.

    Hot for stages whose calls wait (I/O): every step of the call's coroutine
    in ``context``, its failure noted and counted, its result settled. It is
    :func:`~._eager.continue_from` written out, so that one generator frame,
    not two, lies between the event loop and the coroutine: every frame there
    costs on each step of the call (and more when the step is a thrown
    exception, as trio's timeouts are).
    """
    run, send, throw = context.run, coro.send, coro.throw
    try:
        while True:
            try:
                sent = yield yielded
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:
                yielded = run(throw, exc)
            else:
                yielded = run(send, sent)
    except StopIteration as stop:
        result = stop.value
    except Exception as exc:
        raise caller.failed(exc, value)  # noqa: B904 - the same exception, re-raised
    if _kinds.get(type(result)) == SCALAR:
        caller.calls_finished += 1
        return result
    return (yield from caller.finished(result, value, context).__await__())


async def give_up(
    policy: CallPolicy,
    exc: Exception,
    value: Any,
    attempts: int,
    *,
    name: str,
    record: Callable[[Failure], None],
    what: str = "item",
    where: str = "",
    remote: str | None = None,
    passed_on: int = 0,
) -> tuple[bool, Any]:
    """Apply ``policy`` to task ``name``'s call on ``value``, which failed for good.

    Returns ``(True, replacement)`` when the error handler gives a result
    instead, or ``(False, EMPTY)`` when the call is skipped (its ``Failure``
    recorded through ``record``); otherwise raises ``exc`` (or the handler's
    own exception) with a note naming the task and the call, to fail the run.
    ``what``: what the call is on (``"item"`` or ``"call"``); ``where``: where
    it ran, for the note (``" in ProcessPoolExecutor"``); ``remote``: the
    worker's traceback; ``passed_on``: values the call had passed on.
    """
    from ..error_handling import Failure

    if policy.handler is not None:
        try:
            go_on, replacement = await policy.handler.handle_error(exc, value, name, attempts)
        except Exception as handler_exc:
            add_note(
                handler_exc,
                f"conveyor: the error handler of task {name!r} failed on "
                f"{what} {describe_item(value)}",
            )
            raise
        if go_on:
            return True, replacement
    elif policy.on_error != "fail":
        record(
            Failure(
                item=value,
                exception=exc,
                task_name=name,
                attempts=attempts,
                values_passed_on=passed_on,
                remote_traceback=remote,
            )
        )
        return False, EMPTY
    raise noted(exc, name, what, value, attempts, where)


def cost_of(policy: CallPolicy, value: Any, name: str, what: str = "item") -> float:
    """The tokens task ``name``'s call on ``value`` takes from its rate limit.

    An exception of the ``cost=`` function is the run's error: it is raised
    with a note naming the task and the call, as the error handler's is.
    """
    if policy.cost is None:
        return 1
    try:
        return policy.cost(value)
    except Exception as exc:
        add_note(
            exc,
            f"conveyor: the cost= function of task {name!r} failed on {what} "
            f"{describe_item(value)}",
        )
        raise


def noted(
    exc: Exception, name: str, what: str, value: Any, attempts: int = 1, where: str = ""
) -> Exception:
    """``exc``, with a note: task ``name`` failed (``where``) on ``what`` ``value``."""
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    add_note(exc, f"conveyor: task {name!r} failed{tries}{where} on {what} {describe_item(value)}")
    return exc


def _with_side_inputs(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], value: Any
) -> Any:
    return func(value, *args, **kwargs)
