"""``@single_task`` and ``@batch_task``: turn functions into tasks.

Options may be given by keyword or, as in conveyor-streaming 1.2, in
positional order. Every option is checked when the task is defined, so a
typo fails at import time rather than in the middle of a run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterable, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar, overload

from ._engine._ratelimit import RateLimit, RateLimiter
from .error_handling import ErrorAction, ErrorHandler, RetryConfig
from .executors import ExecutorLike, check_executor, check_run_in_thread
from .tasks import BatchTask, SingleTask

__all__ = ["batch_task", "single_task"]

F = TypeVar("F", bound=Callable[..., Any])
_Task = TypeVar("_Task", SingleTask[Any, Any], BatchTask[Any, Any])

# The task's types are read off the function (the output rule, in overload
# order): ``_I`` is the item parameter's type (for a batch task, ``list[_I]``),
# ``_P`` the side inputs after it, and ``_X`` an output item: an async
# generator or generator yielding ``_X``, a ``list[_X]`` (flattened), or
# ``_X | None`` (``None`` drops the item), awaited first for ``async def``. A
# function without an item parameter is a zero-input source: ``In`` is ``Any``.
# A batch function whose first parameter is not a list is a method: ``_S`` is
# its ``self`` and the batch comes next.
_I = TypeVar("_I")
_X = TypeVar("_X")
_P = ParamSpec("_P")
_S = TypeVar("_S")

if TYPE_CHECKING:
    from typing import Protocol

    class _SingleTaskDecorator(Protocol):
        """What ``single_task(...)`` with options returns."""

        @overload
        def __call__(
            self, func: Callable[Concatenate[_I, _P], AsyncIterable[_X]], /
        ) -> SingleTask[_I, _X]: ...
        @overload
        def __call__(
            self, func: Callable[Concatenate[_I, _P], Awaitable[list[_X]]], /
        ) -> SingleTask[_I, _X]: ...
        @overload
        def __call__(
            self, func: Callable[Concatenate[_I, _P], Awaitable[_X | None]], /
        ) -> SingleTask[_I, _X]: ...
        @overload
        def __call__(
            self, func: Callable[Concatenate[_I, _P], Iterator[_X]], /
        ) -> SingleTask[_I, _X]: ...
        @overload
        def __call__(
            self, func: Callable[Concatenate[_I, _P], list[_X]], /
        ) -> SingleTask[_I, _X]: ...
        @overload
        def __call__(
            self, func: Callable[Concatenate[_I, _P], _X | None], /
        ) -> SingleTask[_I, _X]: ...
        @overload
        def __call__(self, func: Callable[[], AsyncIterable[_X]], /) -> SingleTask[Any, _X]: ...
        @overload
        def __call__(self, func: Callable[[], Awaitable[list[_X]]], /) -> SingleTask[Any, _X]: ...
        @overload
        def __call__(self, func: Callable[[], Awaitable[_X | None]], /) -> SingleTask[Any, _X]: ...
        @overload
        def __call__(self, func: Callable[[], Iterator[_X]], /) -> SingleTask[Any, _X]: ...
        @overload
        def __call__(self, func: Callable[[], list[_X]], /) -> SingleTask[Any, _X]: ...
        @overload
        def __call__(self, func: Callable[[], _X | None], /) -> SingleTask[Any, _X]: ...
        @overload
        def __call__(self, func: Callable[..., Any], /) -> SingleTask[Any, Any]: ...

        def __call__(self, func: Callable[..., Any], /) -> SingleTask[Any, Any]: ...

    class _BatchTaskDecorator(Protocol):
        """What ``batch_task(...)`` returns."""

        @overload
        def __call__(
            self, func: Callable[Concatenate[list[_I], _P], AsyncIterable[_X]], /
        ) -> BatchTask[_I, _X]: ...
        @overload
        def __call__(
            self, func: Callable[Concatenate[list[_I], _P], Awaitable[list[_X]]], /
        ) -> BatchTask[_I, _X]: ...
        @overload
        def __call__(
            self, func: Callable[Concatenate[list[_I], _P], Awaitable[_X | None]], /
        ) -> BatchTask[_I, _X]: ...
        @overload
        def __call__(
            self, func: Callable[Concatenate[list[_I], _P], Iterator[_X]], /
        ) -> BatchTask[_I, _X]: ...
        @overload
        def __call__(
            self, func: Callable[Concatenate[list[_I], _P], list[_X]], /
        ) -> BatchTask[_I, _X]: ...
        @overload
        def __call__(
            self, func: Callable[Concatenate[list[_I], _P], _X | None], /
        ) -> BatchTask[_I, _X]: ...
        @overload
        def __call__(
            self, func: Callable[Concatenate[_S, list[_I], _P], AsyncIterable[_X]], /
        ) -> BatchTask[_I, _X]: ...
        @overload
        def __call__(
            self, func: Callable[Concatenate[_S, list[_I], _P], Awaitable[list[_X]]], /
        ) -> BatchTask[_I, _X]: ...
        @overload
        def __call__(
            self, func: Callable[Concatenate[_S, list[_I], _P], Awaitable[_X | None]], /
        ) -> BatchTask[_I, _X]: ...
        @overload
        def __call__(
            self, func: Callable[Concatenate[_S, list[_I], _P], Iterator[_X]], /
        ) -> BatchTask[_I, _X]: ...
        @overload
        def __call__(
            self, func: Callable[Concatenate[_S, list[_I], _P], list[_X]], /
        ) -> BatchTask[_I, _X]: ...
        @overload
        def __call__(
            self, func: Callable[Concatenate[_S, list[_I], _P], _X | None], /
        ) -> BatchTask[_I, _X]: ...
        @overload
        def __call__(self, func: Callable[..., Any], /) -> BatchTask[Any, Any]: ...

        def __call__(self, func: Callable[..., Any], /) -> BatchTask[Any, Any]: ...


def _retry_config(
    retry_config: RetryConfig | None,
    retry_attempts: int,
    retry_delay: float,
    retry_exponential_backoff: bool,
    retry_max_delay: float,
    retry_jitter: bool,
    retry_on: type[Exception] | tuple[type[Exception], ...],
    retry_after: Callable[[Exception], float | None] | None = None,
) -> RetryConfig:
    if retry_config is not None:
        if not isinstance(retry_config, RetryConfig):
            raise TypeError(f"retry_config must be a RetryConfig, got {retry_config!r}")
        if retry_after is not None:
            return dataclasses.replace(retry_config, retry_after=retry_after)
        return retry_config
    return RetryConfig(
        max_attempts=retry_attempts,
        base_delay=retry_delay,
        exponential_backoff=retry_exponential_backoff,
        max_delay=retry_max_delay,
        jitter=retry_jitter,
        retry_on=retry_on if isinstance(retry_on, tuple) else (retry_on,),
        retry_after=retry_after,
    )


@overload
def single_task(
    func: Callable[Concatenate[_I, _P], AsyncIterable[_X]], /
) -> SingleTask[_I, _X]: ...
@overload
def single_task(
    func: Callable[Concatenate[_I, _P], Awaitable[list[_X]]], /
) -> SingleTask[_I, _X]: ...
@overload
def single_task(
    func: Callable[Concatenate[_I, _P], Awaitable[_X | None]], /
) -> SingleTask[_I, _X]: ...
@overload
def single_task(func: Callable[Concatenate[_I, _P], Iterator[_X]], /) -> SingleTask[_I, _X]: ...
@overload
def single_task(func: Callable[Concatenate[_I, _P], list[_X]], /) -> SingleTask[_I, _X]: ...
@overload
def single_task(func: Callable[Concatenate[_I, _P], _X | None], /) -> SingleTask[_I, _X]: ...
@overload
def single_task(func: Callable[[], AsyncIterable[_X]], /) -> SingleTask[Any, _X]: ...
@overload
def single_task(func: Callable[[], Awaitable[list[_X]]], /) -> SingleTask[Any, _X]: ...
@overload
def single_task(func: Callable[[], Awaitable[_X | None]], /) -> SingleTask[Any, _X]: ...
@overload
def single_task(func: Callable[[], Iterator[_X]], /) -> SingleTask[Any, _X]: ...
@overload
def single_task(func: Callable[[], list[_X]], /) -> SingleTask[Any, _X]: ...
@overload
def single_task(func: Callable[[], _X | None], /) -> SingleTask[Any, _X]: ...
@overload
def single_task(func: Callable[..., Any], /) -> SingleTask[Any, Any]: ...


@overload
def single_task(
    func: None = None,
    on_error: ErrorAction = "fail",
    retry_attempts: int = 1,
    retry_delay: float = 1.0,
    retry_exponential_backoff: bool = True,
    retry_max_delay: float = 60.0,
    error_handler: ErrorHandler | None = None,
    task_name: str | None = None,
    concurrency_limit: int | None = None,
    *,
    retry_jitter: bool = False,
    retry_on: type[Exception] | tuple[type[Exception], ...] = Exception,
    retry_config: RetryConfig | None = None,
    timeout: float | None = None,
    run_in_thread: bool = False,
    executor: ExecutorLike = None,
    chunk_size: int | None = None,
    rate_limit: RateLimit | RateLimiter | None = None,
    cost: Callable[[Any], float] | None = None,
    retry_after: Callable[[Exception], float | None] | None = None,
) -> _SingleTaskDecorator: ...


def single_task(
    func: Callable[..., Any] | None = None,
    on_error: ErrorAction = "fail",
    retry_attempts: int = 1,
    retry_delay: float = 1.0,
    retry_exponential_backoff: bool = True,
    retry_max_delay: float = 60.0,
    error_handler: ErrorHandler | None = None,
    task_name: str | None = None,
    concurrency_limit: int | None = None,
    *,
    retry_jitter: bool = False,
    retry_on: type[Exception] | tuple[type[Exception], ...] = Exception,
    retry_config: RetryConfig | None = None,
    timeout: float | None = None,
    run_in_thread: bool = False,
    executor: ExecutorLike = None,
    chunk_size: int | None = None,
    rate_limit: RateLimit | RateLimiter | None = None,
    cost: Callable[[Any], float] | None = None,
    retry_after: Callable[[Exception], float | None] | None = None,
) -> SingleTask[Any, Any] | _SingleTaskDecorator:
    """Make a task that calls the function once per item, many items at once.

    Use it bare (``@single_task``) or with options
    (``@single_task(concurrency_limit=10)``); options may also be given in
    conveyor-streaming 1.2's positional order. Every option is checked here,
    when the task is defined, so a typo fails at import time. What the
    function returns decides what flows on (the output rule): a value, ``None``
    (the item is dropped), a list (flattened), or the values of a generator.

    Args:
        func: The function: ``async def``, ``def``, an async generator
            function or a generator function. It takes the item first, then
            any side inputs (none at all for a zero-input source). Left out
            when options are given: a decorator is returned instead.
        on_error: What a failure that retries did not cure does: ``"fail"``
            (the default) ends the run with that exception; ``"skip_item"``
            (or ``"skip_batch"``) drops the item and records a
            :class:`~conveyor.Failure` in the stream's ``failures``.
        retry_attempts: Tries per call in all, at least 1 (1: no retry).
        retry_delay: Seconds to wait before the second try.
        retry_exponential_backoff: Double the delay after each failed try.
        retry_max_delay: The longest wait between tries, in seconds.
        error_handler: Decides after retries, instead of ``on_error``: see
            :class:`~conveyor.ErrorHandler`.
        task_name: The name in error notes, failure records and statistics
            (default: the function's ``__name__``).
        concurrency_limit: The most calls of this task in flight at once, at
            least 1 (default: the run's window, 256 or more).
        retry_jitter: Wait a random time between 0 and the delay ("full
            jitter"), so that many failing calls do not retry in lockstep.
        retry_on: Only exceptions of these types are retried (default: every
            ``Exception``); others go straight to the error policy.
        retry_config: Every retry setting in one :class:`~conveyor.RetryConfig`;
            when given, the ``retry_*`` options are not used.
        timeout: Seconds each attempt may take (``None``: no limit); a late
            attempt is cancelled and its ``TimeoutError`` goes to the retries
            and the error policy.
        run_in_thread: Run a sync function in AnyIO's worker threads instead
            of on the event loop (for blocking code). Sync functions only:
            an ``async def`` raises ``TypeError``, as with processes.
        executor: Where the calls run (default ``None``: on the event loop):
            ``"thread"`` (the same as ``run_in_thread=True``), ``"process"``
            (AnyIO's worker processes) or a ``concurrent.futures.Executor``
            you own (a process pool, loky, a Dask ``client.get_executor()``),
            never shut down by conveyor. Processes and clusters take sync,
            non-generator functions only and get calls in round trips of
            several. See ``docs/scaling.md``.
        chunk_size: The most results of calls that finish without suspending
            that travel on together, at least 1 (default 128; 1 passes each
            result on alone). Calls that really await are never held back.
            With a process or cluster ``executor``: the calls per round trip
            (default: tuned from the measured time per call).
        rate_limit: Caps the calls: a :class:`~conveyor.RateLimit` is this
            stage's own limit in each run; a :class:`~conveyor.RateLimiter`
            is one bucket shared with every stage and run that uses it
            (default: no rate limit). See ``docs/flow-control.md``.
        cost: ``cost(item)`` is the tokens an attempt takes from the rate
            limit (default: 1 per attempt).
        retry_after: ``retry_after(exc)`` may give the seconds to wait before
            the next attempt (say, from an HTTP 429's ``Retry-After``), capped
            at ``retry_max_delay``; ``None`` keeps the backoff.

    Returns:
        A :class:`~conveyor.SingleTask` when ``func`` is given, else a
        decorator that makes one.

    Raises:
        TypeError: ``func`` is not callable, an option has the wrong type,
            or an async function is given a thread or process ``executor``
            (or ``run_in_thread=True``).
        ValueError: An option is out of range (``concurrency_limit=0``,
            ``retry_attempts=0``, an unknown ``on_error``...).

    Example::

        @single_task(concurrency_limit=10, retry_attempts=3, timeout=5.0)
        async def fetch(url: str) -> bytes:
            ...
    """
    # Long only by its signature and docstring (the public contract); the body
    # gathers the options, and _checked_decorator / the task class check them.
    retry = _retry_config(
        retry_config,
        retry_attempts,
        retry_delay,
        retry_exponential_backoff,
        retry_max_delay,
        retry_jitter,
        retry_on,
        retry_after,
    )
    options: dict[str, Any] = {
        "on_error": on_error,
        "retry_config": retry,
        "error_handler": error_handler,
        "task_name": task_name,
        "concurrency_limit": concurrency_limit,
        "timeout": timeout,
        "run_in_thread": run_in_thread,
        "executor": executor,
        "chunk_size": chunk_size,
        "rate_limit": rate_limit,
        "cost": cost,
    }
    if func is None:
        return _checked_decorator(SingleTask, options)
    if not callable(func):
        raise TypeError(
            f"single_task takes the function to decorate (or options by keyword), got {func!r}"
        )
    return SingleTask(func, **options)


def batch_task(
    min_size: int = 1,
    max_size: int | None = None,
    on_error: ErrorAction = "fail",
    retry_attempts: int = 1,
    retry_delay: float = 1.0,
    retry_exponential_backoff: bool = True,
    retry_max_delay: float = 60.0,
    error_handler: ErrorHandler | None = None,
    task_name: str | None = None,
    *,
    retry_jitter: bool = False,
    retry_on: type[Exception] | tuple[type[Exception], ...] = Exception,
    retry_config: RetryConfig | None = None,
    timeout: float | None = None,
    run_in_thread: bool = False,
    executor: ExecutorLike = None,
    max_wait: float | None = None,
    concurrency_limit: int | None = None,
    rate_limit: RateLimit | RateLimiter | None = None,
    cost: Callable[[list[Any]], float] | None = None,
    retry_after: Callable[[Exception], float | None] | None = None,
) -> _BatchTaskDecorator:
    """Make a task that calls the function with lists of up to ``max_size`` items.

    Always used with parentheses: ``@batch_task(max_size=50)``. Items are
    batched in arrival order (input order in ordered mode). A batch is called
    as soon as it holds ``max_size`` values, or, with ``max_wait``, once its
    oldest value has waited that long and it holds at least ``min_size`` (in
    ordered mode the clock starts when the value reaches the stage in input
    order). ``concurrency_limit`` batch calls may run at once; ordered
    results still come out in input order.

    At the end of the input a remainder of at least ``min_size`` items is
    processed; a smaller one is not: a warning is logged and the run's
    ``failures`` get a :class:`~conveyor.Failure` whose exception is a
    :class:`~conveyor.BatchRemainderError` holding the values. The function's
    result follows the output rule of :func:`single_task`: a list result is
    flattened, so returning one value per item keeps the items apart. See
    ``docs/flow-control.md``.

    Args:
        min_size: The fewest items of the last, partial batch that are still
            processed, at least 1.
        max_size: The most items per batch, at least ``min_size``
            (``None``: the same as ``min_size``).
        on_error: As for :func:`single_task`; ``"skip_batch"`` (or
            ``"skip_item"``) drops the whole failed batch and records one
            :class:`~conveyor.Failure` whose ``item`` is the batch.
        retry_attempts: As for :func:`single_task`.
        retry_delay: As for :func:`single_task`.
        retry_exponential_backoff: As for :func:`single_task`.
        retry_max_delay: As for :func:`single_task`.
        error_handler: As for :func:`single_task`; its ``item`` is the batch.
        task_name: As for :func:`single_task`.
        retry_jitter: As for :func:`single_task`.
        retry_on: As for :func:`single_task`.
        retry_config: As for :func:`single_task`.
        timeout: Seconds each batch call may take; as for :func:`single_task`.
        run_in_thread: As for :func:`single_task`.
        executor: As for :func:`single_task`; each batch is one call and one
            round trip.
        max_wait: Seconds the oldest value of a batch may wait for more
            (``None``, the default: wait for ``max_size`` values). Needs a
            ``max_size`` above ``min_size``: at ``min_size`` values a batch
            would be full already, so ``max_wait`` could never take effect.
        concurrency_limit: The most batch calls at once (default 1).
        rate_limit: As for :func:`single_task`.
        cost: ``cost(batch)`` is the tokens a batch call takes (say,
            ``cost=len``; default: 1 per call).
        retry_after: As for :func:`single_task`.

    Returns:
        A decorator that makes a :class:`~conveyor.BatchTask` of the function.

    Raises:
        TypeError: Used bare (``@batch_task`` without parentheses), or an
            option has the wrong type.
        ValueError: An option is out of range (``max_size < min_size``,
            ``min_size=0``, an unknown ``on_error``...), or ``max_wait`` is
            given where it cannot take effect (``max_size == min_size``).

    Example::

        @batch_task(max_size=100)
        async def store(rows: list[dict]) -> list[int]:
            return await db.insert_many(rows)  # one id per row flows on
    """
    # Long only by its signature and docstring (the public contract); the body
    # gathers the options, and _checked_decorator / the task class check them.
    if callable(min_size):
        raise TypeError(
            "batch_task needs parentheses: write @batch_task(max_size=...) "
            "(a bare @batch_task has no batch size)"
        )
    retry = _retry_config(
        retry_config,
        retry_attempts,
        retry_delay,
        retry_exponential_backoff,
        retry_max_delay,
        retry_jitter,
        retry_on,
        retry_after,
    )
    options: dict[str, Any] = {
        "min_size": min_size,
        "max_size": max_size,
        "on_error": on_error,
        "retry_config": retry,
        "error_handler": error_handler,
        "task_name": task_name,
        "timeout": timeout,
        "run_in_thread": run_in_thread,
        "executor": executor,
        "max_wait": max_wait,
        "concurrency_limit": concurrency_limit,
        "rate_limit": rate_limit,
        "cost": cost,
    }
    return _checked_decorator(BatchTask, options)


#: Options checked only once the function is known: it must suit them.
_CHECKED_WITH_FUNCTION = ("run_in_thread", "executor")


def _checked_decorator(
    make: Callable[..., _Task], options: dict[str, Any]
) -> Callable[[Callable[..., Any]], _Task]:
    """A decorator that makes a task of its function with ``options``.

    The options are checked now, when the decorator is made, so that a typo
    fails where the task is defined, not where the decorator is applied.
    """
    make(
        _placeholder,
        **{name: value for name, value in options.items() if name not in _CHECKED_WITH_FUNCTION},
    )
    check_executor(options["executor"])
    check_run_in_thread(options["run_in_thread"])

    def decorate(function: Callable[..., Any]) -> _Task:
        return make(function, **options)

    return decorate


def _placeholder(*args: Any) -> None:
    """Stands in for the function while options are checked."""
