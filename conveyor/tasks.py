"""Tasks: a function plus how conveyor should run it.

A :class:`SingleTask` calls its function once per item, many items at once; a
:class:`BatchTask` calls it with lists of items. Both are immutable (every
``with_*`` method returns a new task), both compose with ``|`` into a
:class:`~conveyor.pipeline.Pipeline`, and both behave as a one-stage pipeline
wherever a pipeline would: ``await f(data).collect()``, ``f.as_completed(data)``,
``async with f.open(data) as stream``.
"""

from __future__ import annotations

import copy
import types
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from ._engine._calls import CallPolicy
from ._engine._inputs import wrap as _wrap_side_input
from ._engine._ratelimit import RateLimit, RateLimiter
from ._engine._run import NO_DATA, RunScope
from ._engine._spec import StageSpec
from .error_handling import ErrorAction, ErrorHandler, RetryConfig, check_error_action
from .executors import (
    ExecutorLike,
    check_executor,
    check_offloadable,
    check_run_in_thread,
    check_threadable,
    offloader_for,
)

if TYPE_CHECKING:
    from .context import ExecutionMode
    from .pipeline import Pipeline
    from .stream import AsyncStream

__all__ = ["BaseTask", "BatchTask", "SingleTask"]

# A stage consumes ``In`` and produces ``Out``: a stage accepting ``int`` can
# stand where one accepting ``bool`` is expected (contravariant input), and
# one producing ``bool`` where one producing ``int`` is (covariant output).
In = TypeVar("In", contravariant=True)
Out = TypeVar("Out", covariant=True)
Next = TypeVar("Next")
TaskT = TypeVar("TaskT", bound="BaseTask[Any, Any]")

# Function-level variables of the overloads that infer a task's types from its
# function (see ``SingleTask.__init__``): ``_I`` is the item parameter's type,
# ``_X`` an output item's type, ``_P`` the side inputs after the item and ``_S``
# the ``self`` of a batch method.
_I = TypeVar("_I")
_X = TypeVar("_X")
_P = ParamSpec("_P")
_S = TypeVar("_S")


def _check_limit(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive int or None, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1 (or None for the default), got {value}")
    return value


def _check_max_wait(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"max_wait must be a number of seconds or None, got {value!r}")
    if not value >= 0:
        raise ValueError(f"max_wait must be >= 0 seconds, got {value!r}")
    return float(value)


def _check_rate_limit(
    rate_limit: object, cost: object
) -> tuple[RateLimit | RateLimiter | None, Callable[[Any], float] | None]:
    if rate_limit is not None and not isinstance(rate_limit, (RateLimit, RateLimiter)):
        raise TypeError(
            "rate_limit must be a RateLimit (this stage's own limit), a RateLimiter "
            f"(shared) or None, got {rate_limit!r}"
        )
    if cost is not None:
        if not callable(cost):
            raise TypeError(f"cost must be a function of the call's input or None, got {cost!r}")
        if rate_limit is None:
            raise ValueError("cost= needs a rate_limit= to take its tokens from")
    return rate_limit, cost


def _check_timeout(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"timeout must be a number of seconds or None, got {value!r}")
    if value <= 0:
        raise ValueError(f"timeout must be > 0 seconds, got {value!r}")
    return float(value)


def _executor_settings(
    func: Callable[..., Any], executor: object, run_in_thread: bool, task_name: str
) -> tuple[bool, Any, Callable[[], Any] | None]:
    """``(in_thread, executor, offloader factory)`` for a task's ``executor=``."""
    check_run_in_thread(run_in_thread)
    check_executor(executor)
    if executor is None or executor == "thread":
        if executor == "thread":
            check_threadable(func, 'executor="thread"', task_name)
        elif run_in_thread:
            check_threadable(func, "run_in_thread=True", task_name)
        return bool(run_in_thread) or executor == "thread", executor, None
    if run_in_thread:
        raise ValueError(
            f"task {task_name!r}: run_in_thread=True and executor={executor!r} contradict "
            'each other; run_in_thread=True is executor="thread"'
        )
    check_offloadable(func, executor, task_name)
    return False, executor, offloader_for(executor)  # type: ignore[arg-type]


class BaseTask(Generic[In, Out]):
    """What single and batch tasks share: the error policy, name and side inputs.

    Not made directly: use :func:`~conveyor.single_task`,
    :func:`~conveyor.batch_task`, or :class:`SingleTask` and
    :class:`BatchTask`. A task is immutable: ``with_inputs`` and the other
    ``with_*`` methods return new objects. Calling a task runs it alone, as a
    one-stage :class:`~conveyor.Pipeline`; ``|`` chains it with others.

    Args:
        on_error: What a failure that retries did not cure does:
            ``"fail"``, ``"skip_item"`` or ``"skip_batch"`` (see
            :func:`~conveyor.single_task`).
        retry_config: How failed calls are tried again (default: never).
        error_handler: Decides after retries, instead of ``on_error``.
        task_name: The name in error notes, failure records and statistics.
        timeout: Seconds each attempt may take (``None``: no limit).
        rate_limit: A :class:`~conveyor.RateLimit` or shared
            :class:`~conveyor.RateLimiter` every attempt takes tokens from.
        cost: The tokens one attempt takes, from its item (default: 1).

    Raises:
        TypeError: ``retry_config``, ``error_handler`` or ``task_name`` has the
            wrong type.
        ValueError: ``on_error`` or ``timeout`` is not accepted.
    """

    def __init__(
        self,
        on_error: ErrorAction = "fail",
        retry_config: RetryConfig | None = None,
        error_handler: ErrorHandler | None = None,
        task_name: str | None = None,
        *,
        timeout: float | None = None,
        rate_limit: RateLimit | RateLimiter | None = None,
        cost: Callable[[Any], float] | None = None,
    ) -> None:
        if task_name is not None and not isinstance(task_name, str):
            raise TypeError(f"task_name must be a str or None, got {task_name!r}")
        self.on_error: ErrorAction = check_error_action(on_error)
        self.rate_limit, self.cost = _check_rate_limit(rate_limit, cost)
        if retry_config is not None and not isinstance(retry_config, RetryConfig):
            raise TypeError(f"retry_config must be a RetryConfig, got {retry_config!r}")
        self.retry_config = (
            retry_config if retry_config is not None else RetryConfig(max_attempts=1)
        )
        if error_handler is not None and not callable(getattr(error_handler, "handle_error", None)):
            raise TypeError(
                "error_handler must be an ErrorHandler (with an async handle_error method), "
                f"got {error_handler!r}"
            )
        self.error_handler = error_handler
        self.timeout = _check_timeout(timeout)
        self.task_name = task_name if task_name is not None else type(self).__name__
        self._side_args: tuple[Any, ...] = ()
        self._side_kwargs: dict[str, Any] = {}

    # -- identity -----------------------------------------------------------

    @property
    def name(self) -> str:
        """The task's name, used in messages and failure records."""
        return self.task_name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.task_name!r}>"

    def _copy(self: TaskT) -> TaskT:
        new = copy.copy(self)
        new.__dict__.pop("_spec_cache", None)
        return new

    def _set_function(self, func: Callable[..., Any], task_name: str | None) -> None:
        """Take ``func`` as the task's function; its name is the task's by default."""
        self.func = func
        if task_name is None:
            self.task_name = getattr(func, "__name__", type(func).__name__)

    def _policy(self) -> CallPolicy:
        retry = self.retry_config if self.retry_config.max_attempts > 1 else None
        return CallPolicy(
            on_error=self.on_error,
            retry=retry,
            timeout=self.timeout,
            handler=self.error_handler,
            rate_limit=self.rate_limit,
            cost=self.cost,
        )

    def _stage_spec(self) -> StageSpec:
        raise NotImplementedError

    def stage_spec(self) -> StageSpec:
        """The engine's view of this task (cached; tasks are immutable)."""
        spec: StageSpec | None = self.__dict__.get("_spec_cache")
        if spec is None:
            spec = self.__dict__["_spec_cache"] = self._stage_spec()
        return spec

    # -- side inputs --------------------------------------------------------

    def with_inputs(self: TaskT, *args: Any, **kwargs: Any) -> TaskT:
        """A copy whose function receives these extra arguments after the item.

        Plain values are passed as they are; a coroutine is awaited once (by the
        first run) and its result reused; a coroutine function is called and
        awaited for each run; a conveyor stream gives its first item; any other
        async iterator is passed as is.
        """
        new = self._copy()
        new._set_side_inputs(args, kwargs)
        return new

    def _set_side_inputs(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Take ``args`` and ``kwargs`` as the side inputs, wrapped for the runs."""
        self._side_args = tuple(_wrap_side_input(arg) for arg in args)
        self._side_kwargs = {key: _wrap_side_input(value) for key, value in kwargs.items()}

    # -- binding to instances ----------------------------------------------

    # Read from the class, a task is itself; read from an instance it is bound
    # (the instance is its function's first argument), so its input is the
    # method's next parameter, which a single task's type does not record:
    # ``Any``. (BatchTask narrows this: it keeps its type.)
    @overload
    def __get__(self: TaskT, instance: None, owner: type | None = None) -> TaskT: ...
    @overload
    def __get__(self, instance: object, owner: type | None = None) -> BaseTask[Any, Out]: ...

    def __get__(self, instance: object, owner: type | None = None) -> BaseTask[Any, Out]:
        """Decorating a method binds the task to each instance it is read from."""
        if instance is None:
            return self
        func = getattr(self, "func", None)
        if func is None:
            return self
        new = self._copy()
        new.func = types.MethodType(func, instance)
        return new

    # -- a task is a one-stage pipeline --------------------------------------

    def _pipeline(self) -> Pipeline[In, Out]:
        from .pipeline import Pipeline

        return Pipeline(stages=[self])

    def __or__(self, other: BaseTask[Out, Next] | Pipeline[Out, Next]) -> Pipeline[In, Next]:
        """A pipeline: this task, then ``other`` (whose input must accept our output)."""
        return self._pipeline() | other

    def __call__(
        self, data: In | Iterable[In] | AsyncIterable[In] = NO_DATA, *args: Any, **kwargs: Any
    ) -> AsyncStream[Out]:
        """Run this task alone on ``data``; see :meth:`Pipeline.__call__`."""
        return self._pipeline()(data, *args, **kwargs)

    def as_completed(
        self, data: In | Iterable[In] | AsyncIterable[In] = NO_DATA, *args: Any, **kwargs: Any
    ) -> AsyncStream[Out]:
        """Run this task alone on ``data``, releasing results as they complete."""
        return self._pipeline().as_completed(data, *args, **kwargs)

    def open(
        self, data: In | Iterable[In] | AsyncIterable[In] = NO_DATA, *args: Any, **kwargs: Any
    ) -> RunScope[Out]:
        """``async with task.open(data) as stream``: a structured one-stage run."""
        return self._pipeline().open(data, *args, **kwargs)

    def with_execution_mode(self, mode: ExecutionMode) -> Pipeline[In, Out]:
        """A one-stage pipeline of this task with the given execution mode."""
        return self._pipeline().with_execution_mode(mode)

    def with_context(self, **fields: Any) -> Pipeline[In, Out]:
        """A one-stage pipeline of this task with these context settings."""
        return self._pipeline().with_context(**fields)

    def with_instruments(self, *instruments: Any) -> Pipeline[In, Out]:
        """A one-stage pipeline of this task; see :meth:`Pipeline.with_instruments`."""
        return self._pipeline().with_instruments(*instruments)

    def with_call_timing(self, sample_size: int = 1024) -> Pipeline[In, Out]:
        """A one-stage pipeline of this task; see :meth:`Pipeline.with_call_timing`."""
        return self._pipeline().with_call_timing(sample_size)

    async def process(self, items: AsyncIterable[In] | Any) -> AsyncStream[Out]:
        """Compatibility: a one-stage run over ``items``; iterate what it returns."""
        return self(items)


class SingleTask(BaseTask[In, Out]):
    """Calls ``func(item, *side_inputs)`` once per item, many items at once.

    ``func`` may be ``async def``, ``def``, an async generator function or a
    generator function. At most ``concurrency_limit`` calls run at once
    (default: the run's window, 256 or more; see the docs). ``timeout`` bounds
    each attempt. ``run_in_thread=True`` (or ``executor="thread"``) runs a sync
    function in anyio's worker threads instead of on the event loop;
    ``executor="process"`` or a ``concurrent.futures.Executor`` runs it in
    worker processes or on a cluster, in round trips of ``chunk_size`` calls
    (tuned automatically by default; see ``docs/scaling.md``).
    ``rate_limit`` (a :class:`~conveyor.RateLimit` of the stage's own, or a
    shared :class:`~conveyor.RateLimiter`) makes every attempt take
    ``cost(item)`` tokens first (1 without ``cost``).

    The task's types come from ``func`` by the output rule: ``In`` is the type
    of its first parameter (the item; ``Any`` for a zero-input source) and
    ``Out`` is ``X`` for a function returning ``X``, ``X | None``, ``list[X]``
    (awaited first if ``async def``), a generator function typed
    ``Iterator[X]`` or an async generator function typed ``AsyncIterator[X]``
    (or ``AsyncIterable[X]``).

    Most code makes one with :func:`~conveyor.single_task`, which takes the
    same options (and the ``retry_*`` shorthands).

    Args:
        func: The function, taking the item first, then any side inputs.
        on_error: As for :func:`~conveyor.single_task`.
        retry_config: As for :func:`~conveyor.single_task`.
        error_handler: As for :func:`~conveyor.single_task`.
        task_name: As for :func:`~conveyor.single_task` (default: ``func``'s
            ``__name__``).
        concurrency_limit: The most calls in flight at once, at least 1.
        timeout: Seconds each attempt may take (``None``: no limit).
        run_in_thread: Run a sync ``func`` in AnyIO's worker threads.
        executor: As for :func:`~conveyor.single_task`: ``"thread"``,
            ``"process"`` or a ``concurrent.futures.Executor`` (default
            ``None``: on the event loop).
        chunk_size: The most results of calls that finish without suspending
            that travel on together (default 128); with a process or cluster
            ``executor``, the calls per round trip (default: tuned).

    Raises:
        TypeError: ``func`` is not callable, or an option has the wrong type.
        ValueError: An option is out of range.
    """

    if TYPE_CHECKING:  # the binding is BaseTask.__get__; this only narrows its type

        @overload
        def __get__(self: TaskT, instance: None, owner: type | None = None) -> TaskT: ...
        @overload
        def __get__(self, instance: object, owner: type | None = None) -> SingleTask[Any, Out]: ...
        def __get__(self, instance: object, owner: type | None = None) -> BaseTask[Any, Out]: ...

    @overload
    def __init__(
        self: SingleTask[_I, _X],
        func: Callable[Concatenate[_I, _P], AsyncIterable[_X]],
        _side_args: tuple[Any, ...] | None = None,
        _side_kwargs: dict[str, Any] | None = None,
        on_error: ErrorAction = "fail",
        retry_config: RetryConfig | None = None,
        error_handler: ErrorHandler | None = None,
        task_name: str | None = None,
        concurrency_limit: int | None = None,
        *,
        timeout: float | None = None,
        run_in_thread: bool = False,
        executor: ExecutorLike = None,
        chunk_size: int | None = None,
        rate_limit: RateLimit | RateLimiter | None = None,
        cost: Callable[[Any], float] | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: SingleTask[_I, _X],
        func: Callable[Concatenate[_I, _P], Awaitable[list[_X]]],
        _side_args: tuple[Any, ...] | None = None,
        _side_kwargs: dict[str, Any] | None = None,
        on_error: ErrorAction = "fail",
        retry_config: RetryConfig | None = None,
        error_handler: ErrorHandler | None = None,
        task_name: str | None = None,
        concurrency_limit: int | None = None,
        *,
        timeout: float | None = None,
        run_in_thread: bool = False,
        executor: ExecutorLike = None,
        chunk_size: int | None = None,
        rate_limit: RateLimit | RateLimiter | None = None,
        cost: Callable[[Any], float] | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: SingleTask[_I, _X],
        func: Callable[Concatenate[_I, _P], Awaitable[_X | None]],
        _side_args: tuple[Any, ...] | None = None,
        _side_kwargs: dict[str, Any] | None = None,
        on_error: ErrorAction = "fail",
        retry_config: RetryConfig | None = None,
        error_handler: ErrorHandler | None = None,
        task_name: str | None = None,
        concurrency_limit: int | None = None,
        *,
        timeout: float | None = None,
        run_in_thread: bool = False,
        executor: ExecutorLike = None,
        chunk_size: int | None = None,
        rate_limit: RateLimit | RateLimiter | None = None,
        cost: Callable[[Any], float] | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: SingleTask[_I, _X],
        func: Callable[Concatenate[_I, _P], Iterator[_X]],
        _side_args: tuple[Any, ...] | None = None,
        _side_kwargs: dict[str, Any] | None = None,
        on_error: ErrorAction = "fail",
        retry_config: RetryConfig | None = None,
        error_handler: ErrorHandler | None = None,
        task_name: str | None = None,
        concurrency_limit: int | None = None,
        *,
        timeout: float | None = None,
        run_in_thread: bool = False,
        executor: ExecutorLike = None,
        chunk_size: int | None = None,
        rate_limit: RateLimit | RateLimiter | None = None,
        cost: Callable[[Any], float] | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: SingleTask[_I, _X],
        func: Callable[Concatenate[_I, _P], list[_X]],
        _side_args: tuple[Any, ...] | None = None,
        _side_kwargs: dict[str, Any] | None = None,
        on_error: ErrorAction = "fail",
        retry_config: RetryConfig | None = None,
        error_handler: ErrorHandler | None = None,
        task_name: str | None = None,
        concurrency_limit: int | None = None,
        *,
        timeout: float | None = None,
        run_in_thread: bool = False,
        executor: ExecutorLike = None,
        chunk_size: int | None = None,
        rate_limit: RateLimit | RateLimiter | None = None,
        cost: Callable[[Any], float] | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: SingleTask[_I, _X],
        func: Callable[Concatenate[_I, _P], _X | None],
        _side_args: tuple[Any, ...] | None = None,
        _side_kwargs: dict[str, Any] | None = None,
        on_error: ErrorAction = "fail",
        retry_config: RetryConfig | None = None,
        error_handler: ErrorHandler | None = None,
        task_name: str | None = None,
        concurrency_limit: int | None = None,
        *,
        timeout: float | None = None,
        run_in_thread: bool = False,
        executor: ExecutorLike = None,
        chunk_size: int | None = None,
        rate_limit: RateLimit | RateLimiter | None = None,
        cost: Callable[[Any], float] | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: SingleTask[Any, _X],
        func: Callable[[], AsyncIterable[_X]],
        _side_args: tuple[Any, ...] | None = None,
        _side_kwargs: dict[str, Any] | None = None,
        on_error: ErrorAction = "fail",
        retry_config: RetryConfig | None = None,
        error_handler: ErrorHandler | None = None,
        task_name: str | None = None,
        concurrency_limit: int | None = None,
        *,
        timeout: float | None = None,
        run_in_thread: bool = False,
        executor: ExecutorLike = None,
        chunk_size: int | None = None,
        rate_limit: RateLimit | RateLimiter | None = None,
        cost: Callable[[Any], float] | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: SingleTask[Any, _X],
        func: Callable[[], Awaitable[list[_X]]],
        _side_args: tuple[Any, ...] | None = None,
        _side_kwargs: dict[str, Any] | None = None,
        on_error: ErrorAction = "fail",
        retry_config: RetryConfig | None = None,
        error_handler: ErrorHandler | None = None,
        task_name: str | None = None,
        concurrency_limit: int | None = None,
        *,
        timeout: float | None = None,
        run_in_thread: bool = False,
        executor: ExecutorLike = None,
        chunk_size: int | None = None,
        rate_limit: RateLimit | RateLimiter | None = None,
        cost: Callable[[Any], float] | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: SingleTask[Any, _X],
        func: Callable[[], Awaitable[_X | None]],
        _side_args: tuple[Any, ...] | None = None,
        _side_kwargs: dict[str, Any] | None = None,
        on_error: ErrorAction = "fail",
        retry_config: RetryConfig | None = None,
        error_handler: ErrorHandler | None = None,
        task_name: str | None = None,
        concurrency_limit: int | None = None,
        *,
        timeout: float | None = None,
        run_in_thread: bool = False,
        executor: ExecutorLike = None,
        chunk_size: int | None = None,
        rate_limit: RateLimit | RateLimiter | None = None,
        cost: Callable[[Any], float] | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: SingleTask[Any, _X],
        func: Callable[[], Iterator[_X]],
        _side_args: tuple[Any, ...] | None = None,
        _side_kwargs: dict[str, Any] | None = None,
        on_error: ErrorAction = "fail",
        retry_config: RetryConfig | None = None,
        error_handler: ErrorHandler | None = None,
        task_name: str | None = None,
        concurrency_limit: int | None = None,
        *,
        timeout: float | None = None,
        run_in_thread: bool = False,
        executor: ExecutorLike = None,
        chunk_size: int | None = None,
        rate_limit: RateLimit | RateLimiter | None = None,
        cost: Callable[[Any], float] | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: SingleTask[Any, _X],
        func: Callable[[], list[_X]],
        _side_args: tuple[Any, ...] | None = None,
        _side_kwargs: dict[str, Any] | None = None,
        on_error: ErrorAction = "fail",
        retry_config: RetryConfig | None = None,
        error_handler: ErrorHandler | None = None,
        task_name: str | None = None,
        concurrency_limit: int | None = None,
        *,
        timeout: float | None = None,
        run_in_thread: bool = False,
        executor: ExecutorLike = None,
        chunk_size: int | None = None,
        rate_limit: RateLimit | RateLimiter | None = None,
        cost: Callable[[Any], float] | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: SingleTask[Any, _X],
        func: Callable[[], _X | None],
        _side_args: tuple[Any, ...] | None = None,
        _side_kwargs: dict[str, Any] | None = None,
        on_error: ErrorAction = "fail",
        retry_config: RetryConfig | None = None,
        error_handler: ErrorHandler | None = None,
        task_name: str | None = None,
        concurrency_limit: int | None = None,
        *,
        timeout: float | None = None,
        run_in_thread: bool = False,
        executor: ExecutorLike = None,
        chunk_size: int | None = None,
        rate_limit: RateLimit | RateLimiter | None = None,
        cost: Callable[[Any], float] | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: SingleTask[Any, Any],
        func: Callable[..., Any],
        _side_args: tuple[Any, ...] | None = None,
        _side_kwargs: dict[str, Any] | None = None,
        on_error: ErrorAction = "fail",
        retry_config: RetryConfig | None = None,
        error_handler: ErrorHandler | None = None,
        task_name: str | None = None,
        concurrency_limit: int | None = None,
        *,
        timeout: float | None = None,
        run_in_thread: bool = False,
        executor: ExecutorLike = None,
        chunk_size: int | None = None,
        rate_limit: RateLimit | RateLimiter | None = None,
        cost: Callable[[Any], float] | None = None,
    ) -> None: ...

    def __init__(
        self,
        func: Callable[..., Any],
        _side_args: tuple[Any, ...] | None = None,
        _side_kwargs: dict[str, Any] | None = None,
        on_error: ErrorAction = "fail",
        retry_config: RetryConfig | None = None,
        error_handler: ErrorHandler | None = None,
        task_name: str | None = None,
        concurrency_limit: int | None = None,
        *,
        timeout: float | None = None,
        run_in_thread: bool = False,
        executor: ExecutorLike = None,
        chunk_size: int | None = None,
        rate_limit: RateLimit | RateLimiter | None = None,
        cost: Callable[[Any], float] | None = None,
    ) -> None:
        if not callable(func):
            raise TypeError(f"a task needs a callable, got {func!r}")
        super().__init__(
            on_error,
            retry_config,
            error_handler,
            task_name,
            timeout=timeout,
            rate_limit=rate_limit,
            cost=cost,
        )
        self._set_function(func, task_name)
        self.concurrency_limit = _check_limit("concurrency_limit", concurrency_limit)
        self.run_in_thread, self.executor, self._offload = _executor_settings(
            func, executor, run_in_thread, self.task_name
        )
        self.chunk_size = _check_limit("chunk_size", chunk_size)
        self._set_side_inputs(_side_args or (), _side_kwargs or {})

    def _stage_spec(self) -> StageSpec:
        return StageSpec(
            func=self.func,
            name=self.task_name,
            policy=self._policy(),
            concurrency_limit=self.concurrency_limit,
            args=self._side_args,
            kwargs=self._side_kwargs,
            in_thread=self.run_in_thread,
            chunk_size=self.chunk_size,
            offload=self._offload,
        )


class BatchTask(BaseTask[In, Out]):
    """Calls ``func(batch, *side_inputs)`` with lists of up to ``max_size`` items.

    Items are batched in arrival order (input order in ordered mode). A
    batch is called as soon as it holds ``max_size`` values or, with
    ``max_wait`` (seconds), once its oldest value has waited that long and
    it holds at least ``min_size``. Up to ``concurrency_limit`` batch calls
    run at once (default 1); in ordered mode their outputs are still
    released in input order. At the end of the input a remainder of at
    least ``min_size`` items is processed; a smaller one is not: a warning
    is logged and a :class:`~conveyor.Failure` holding a
    :class:`~conveyor.BatchRemainderError` is recorded. ``max_size=None``
    means ``max_size = min_size``; ``max_wait`` needs ``max_size > min_size``
    (else it could never call a batch early: ``ValueError``). ``rate_limit`` and ``cost`` are as for
    :class:`SingleTask` (a batch call costs one token unless ``cost`` says
    otherwise, e.g. ``cost=len``).

    The task's types come from ``func``: ``In`` is the element type of its
    first parameter (``list[In]``) and ``Out`` follows the output rule, as for
    :class:`SingleTask`.

    Most code makes one with :func:`~conveyor.batch_task`, which takes the
    same options (and the ``retry_*`` shorthands).

    Args:
        func: The function, taking the batch (a list) first, then any side
            inputs.
        min_size: The fewest items of the last, partial batch that are still
            processed, at least 1.
        max_size: The most items per batch (``None``: ``min_size``).
        on_error: As for :func:`~conveyor.batch_task`.
        retry_config: As for :func:`~conveyor.single_task`.
        error_handler: As for :func:`~conveyor.single_task`; its ``item`` is
            the batch.
        task_name: As for :func:`~conveyor.single_task`.
        timeout: Seconds each batch call may take (``None``: no limit).
        run_in_thread: Run a sync ``func`` in AnyIO's worker threads.
        executor: As for :func:`~conveyor.single_task`; each batch is one
            call and one round trip (default ``None``: on the event loop).

    Raises:
        TypeError: ``func`` is not callable, or an option has the wrong type.
        ValueError: An option is out of range (``max_size < min_size``...).
    """

    if TYPE_CHECKING:  # the binding is BaseTask.__get__; this only states its type
        # A batch task's function takes a list first, so the overloads below
        # tell a method (``self, batch: list[X]``) from a function and take
        # ``In`` from the batch either way: a bound batch task keeps its type.
        def __get__(self: TaskT, instance: object, owner: type | None = None) -> TaskT: ...

    @overload
    def __init__(
        self: BatchTask[_I, _X],
        func: Callable[Concatenate[list[_I], _P], AsyncIterable[_X]],
        min_size: int = 1,
        max_size: int | None = None,
        _side_args: tuple[Any, ...] | None = None,
        _side_kwargs: dict[str, Any] | None = None,
        on_error: ErrorAction = "fail",
        retry_config: RetryConfig | None = None,
        error_handler: ErrorHandler | None = None,
        task_name: str | None = None,
        *,
        timeout: float | None = None,
        run_in_thread: bool = False,
        executor: ExecutorLike = None,
        max_wait: float | None = None,
        concurrency_limit: int | None = None,
        rate_limit: RateLimit | RateLimiter | None = None,
        cost: Callable[[list[Any]], float] | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: BatchTask[_I, _X],
        func: Callable[Concatenate[list[_I], _P], Awaitable[list[_X]]],
        min_size: int = 1,
        max_size: int | None = None,
        _side_args: tuple[Any, ...] | None = None,
        _side_kwargs: dict[str, Any] | None = None,
        on_error: ErrorAction = "fail",
        retry_config: RetryConfig | None = None,
        error_handler: ErrorHandler | None = None,
        task_name: str | None = None,
        *,
        timeout: float | None = None,
        run_in_thread: bool = False,
        executor: ExecutorLike = None,
        max_wait: float | None = None,
        concurrency_limit: int | None = None,
        rate_limit: RateLimit | RateLimiter | None = None,
        cost: Callable[[list[Any]], float] | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: BatchTask[_I, _X],
        func: Callable[Concatenate[list[_I], _P], Awaitable[_X | None]],
        min_size: int = 1,
        max_size: int | None = None,
        _side_args: tuple[Any, ...] | None = None,
        _side_kwargs: dict[str, Any] | None = None,
        on_error: ErrorAction = "fail",
        retry_config: RetryConfig | None = None,
        error_handler: ErrorHandler | None = None,
        task_name: str | None = None,
        *,
        timeout: float | None = None,
        run_in_thread: bool = False,
        executor: ExecutorLike = None,
        max_wait: float | None = None,
        concurrency_limit: int | None = None,
        rate_limit: RateLimit | RateLimiter | None = None,
        cost: Callable[[list[Any]], float] | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: BatchTask[_I, _X],
        func: Callable[Concatenate[list[_I], _P], Iterator[_X]],
        min_size: int = 1,
        max_size: int | None = None,
        _side_args: tuple[Any, ...] | None = None,
        _side_kwargs: dict[str, Any] | None = None,
        on_error: ErrorAction = "fail",
        retry_config: RetryConfig | None = None,
        error_handler: ErrorHandler | None = None,
        task_name: str | None = None,
        *,
        timeout: float | None = None,
        run_in_thread: bool = False,
        executor: ExecutorLike = None,
        max_wait: float | None = None,
        concurrency_limit: int | None = None,
        rate_limit: RateLimit | RateLimiter | None = None,
        cost: Callable[[list[Any]], float] | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: BatchTask[_I, _X],
        func: Callable[Concatenate[list[_I], _P], list[_X]],
        min_size: int = 1,
        max_size: int | None = None,
        _side_args: tuple[Any, ...] | None = None,
        _side_kwargs: dict[str, Any] | None = None,
        on_error: ErrorAction = "fail",
        retry_config: RetryConfig | None = None,
        error_handler: ErrorHandler | None = None,
        task_name: str | None = None,
        *,
        timeout: float | None = None,
        run_in_thread: bool = False,
        executor: ExecutorLike = None,
        max_wait: float | None = None,
        concurrency_limit: int | None = None,
        rate_limit: RateLimit | RateLimiter | None = None,
        cost: Callable[[list[Any]], float] | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: BatchTask[_I, _X],
        func: Callable[Concatenate[list[_I], _P], _X | None],
        min_size: int = 1,
        max_size: int | None = None,
        _side_args: tuple[Any, ...] | None = None,
        _side_kwargs: dict[str, Any] | None = None,
        on_error: ErrorAction = "fail",
        retry_config: RetryConfig | None = None,
        error_handler: ErrorHandler | None = None,
        task_name: str | None = None,
        *,
        timeout: float | None = None,
        run_in_thread: bool = False,
        executor: ExecutorLike = None,
        max_wait: float | None = None,
        concurrency_limit: int | None = None,
        rate_limit: RateLimit | RateLimiter | None = None,
        cost: Callable[[list[Any]], float] | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: BatchTask[_I, _X],
        func: Callable[Concatenate[_S, list[_I], _P], AsyncIterable[_X]],
        min_size: int = 1,
        max_size: int | None = None,
        _side_args: tuple[Any, ...] | None = None,
        _side_kwargs: dict[str, Any] | None = None,
        on_error: ErrorAction = "fail",
        retry_config: RetryConfig | None = None,
        error_handler: ErrorHandler | None = None,
        task_name: str | None = None,
        *,
        timeout: float | None = None,
        run_in_thread: bool = False,
        executor: ExecutorLike = None,
        max_wait: float | None = None,
        concurrency_limit: int | None = None,
        rate_limit: RateLimit | RateLimiter | None = None,
        cost: Callable[[list[Any]], float] | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: BatchTask[_I, _X],
        func: Callable[Concatenate[_S, list[_I], _P], Awaitable[list[_X]]],
        min_size: int = 1,
        max_size: int | None = None,
        _side_args: tuple[Any, ...] | None = None,
        _side_kwargs: dict[str, Any] | None = None,
        on_error: ErrorAction = "fail",
        retry_config: RetryConfig | None = None,
        error_handler: ErrorHandler | None = None,
        task_name: str | None = None,
        *,
        timeout: float | None = None,
        run_in_thread: bool = False,
        executor: ExecutorLike = None,
        max_wait: float | None = None,
        concurrency_limit: int | None = None,
        rate_limit: RateLimit | RateLimiter | None = None,
        cost: Callable[[list[Any]], float] | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: BatchTask[_I, _X],
        func: Callable[Concatenate[_S, list[_I], _P], Awaitable[_X | None]],
        min_size: int = 1,
        max_size: int | None = None,
        _side_args: tuple[Any, ...] | None = None,
        _side_kwargs: dict[str, Any] | None = None,
        on_error: ErrorAction = "fail",
        retry_config: RetryConfig | None = None,
        error_handler: ErrorHandler | None = None,
        task_name: str | None = None,
        *,
        timeout: float | None = None,
        run_in_thread: bool = False,
        executor: ExecutorLike = None,
        max_wait: float | None = None,
        concurrency_limit: int | None = None,
        rate_limit: RateLimit | RateLimiter | None = None,
        cost: Callable[[list[Any]], float] | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: BatchTask[_I, _X],
        func: Callable[Concatenate[_S, list[_I], _P], Iterator[_X]],
        min_size: int = 1,
        max_size: int | None = None,
        _side_args: tuple[Any, ...] | None = None,
        _side_kwargs: dict[str, Any] | None = None,
        on_error: ErrorAction = "fail",
        retry_config: RetryConfig | None = None,
        error_handler: ErrorHandler | None = None,
        task_name: str | None = None,
        *,
        timeout: float | None = None,
        run_in_thread: bool = False,
        executor: ExecutorLike = None,
        max_wait: float | None = None,
        concurrency_limit: int | None = None,
        rate_limit: RateLimit | RateLimiter | None = None,
        cost: Callable[[list[Any]], float] | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: BatchTask[_I, _X],
        func: Callable[Concatenate[_S, list[_I], _P], list[_X]],
        min_size: int = 1,
        max_size: int | None = None,
        _side_args: tuple[Any, ...] | None = None,
        _side_kwargs: dict[str, Any] | None = None,
        on_error: ErrorAction = "fail",
        retry_config: RetryConfig | None = None,
        error_handler: ErrorHandler | None = None,
        task_name: str | None = None,
        *,
        timeout: float | None = None,
        run_in_thread: bool = False,
        executor: ExecutorLike = None,
        max_wait: float | None = None,
        concurrency_limit: int | None = None,
        rate_limit: RateLimit | RateLimiter | None = None,
        cost: Callable[[list[Any]], float] | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: BatchTask[_I, _X],
        func: Callable[Concatenate[_S, list[_I], _P], _X | None],
        min_size: int = 1,
        max_size: int | None = None,
        _side_args: tuple[Any, ...] | None = None,
        _side_kwargs: dict[str, Any] | None = None,
        on_error: ErrorAction = "fail",
        retry_config: RetryConfig | None = None,
        error_handler: ErrorHandler | None = None,
        task_name: str | None = None,
        *,
        timeout: float | None = None,
        run_in_thread: bool = False,
        executor: ExecutorLike = None,
        max_wait: float | None = None,
        concurrency_limit: int | None = None,
        rate_limit: RateLimit | RateLimiter | None = None,
        cost: Callable[[list[Any]], float] | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: BatchTask[Any, Any],
        func: Callable[..., Any],
        min_size: int = 1,
        max_size: int | None = None,
        _side_args: tuple[Any, ...] | None = None,
        _side_kwargs: dict[str, Any] | None = None,
        on_error: ErrorAction = "fail",
        retry_config: RetryConfig | None = None,
        error_handler: ErrorHandler | None = None,
        task_name: str | None = None,
        *,
        timeout: float | None = None,
        run_in_thread: bool = False,
        executor: ExecutorLike = None,
        max_wait: float | None = None,
        concurrency_limit: int | None = None,
        rate_limit: RateLimit | RateLimiter | None = None,
        cost: Callable[[list[Any]], float] | None = None,
    ) -> None: ...
    def __init__(
        self,
        func: Callable[..., Any],
        min_size: int = 1,
        max_size: int | None = None,
        _side_args: tuple[Any, ...] | None = None,
        _side_kwargs: dict[str, Any] | None = None,
        on_error: ErrorAction = "fail",
        retry_config: RetryConfig | None = None,
        error_handler: ErrorHandler | None = None,
        task_name: str | None = None,
        *,
        timeout: float | None = None,
        run_in_thread: bool = False,
        executor: ExecutorLike = None,
        max_wait: float | None = None,
        concurrency_limit: int | None = None,
        rate_limit: RateLimit | RateLimiter | None = None,
        cost: Callable[[list[Any]], float] | None = None,
    ) -> None:
        if not callable(func):
            raise TypeError(f"a task needs a callable, got {func!r}")
        super().__init__(
            on_error,
            retry_config,
            error_handler,
            task_name,
            timeout=timeout,
            rate_limit=rate_limit,
            cost=cost,
        )
        self._set_function(func, task_name)
        checked_min = _check_limit("min_size", min_size)
        if checked_min is None:
            raise TypeError("min_size must be a positive int, got None")
        checked_max = _check_limit("max_size", max_size)
        if checked_max is None:
            checked_max = checked_min
        if checked_min > checked_max:
            raise ValueError(f"min_size ({checked_min}) must not exceed max_size ({checked_max})")
        self.min_size = checked_min
        self.max_size = checked_max
        self.max_wait = _check_max_wait(max_wait)
        if self.max_wait is not None and checked_max == checked_min:
            # max_wait only calls a batch early, with at least min_size values;
            # at min_size it holds max_size too, and is called by size anyway.
            sizes = f"max_size={max_size}" if max_size is not None else "no max_size"
            raise ValueError(
                f"max_wait={max_wait!r} cannot take effect with min_size={checked_min} and "
                f"{sizes}: a batch is called once it holds max_size values, and max_wait "
                "only calls it earlier, once it holds at least min_size (a max_size left out is "
                "min_size); give a max_size "
                "above min_size, or leave out max_wait"
            )
        self.concurrency_limit = _check_limit("concurrency_limit", concurrency_limit) or 1
        self.run_in_thread, self.executor, self._offload = _executor_settings(
            func, executor, run_in_thread, self.task_name
        )
        self._set_side_inputs(_side_args or (), _side_kwargs or {})

    def _stage_spec(self) -> StageSpec:
        return StageSpec(
            func=self.func,
            name=self.task_name,
            policy=self._policy(),
            batch=True,
            min_size=self.min_size,
            max_size=self.max_size,
            max_wait=self.max_wait,
            concurrency_limit=self.concurrency_limit,
            args=self._side_args,
            kwargs=self._side_kwargs,
            in_thread=self.run_in_thread,
            offload=self._offload,
        )
