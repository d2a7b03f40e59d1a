"""Instrumentation hooks: watch a run from the outside, in trio's manner.

An :class:`Instrument` is an object with some of the hook methods below
(like ``trio.abc.Instrument``: subclass it and override only what you need).
Attach instruments to a pipeline (``pipeline.with_instruments(a, b)``) or to
one run (``pipeline(data).with_instruments(a)``); several may be attached at
once. Only the hooks that some attached instrument overrides are ever called,
and with none attached a run builds nothing for them and reads no clock for
them: a stage's plain path has no hook site, a call through a policy
(retries, a timeout, a thread) only tests that its hooks are unset, and the
consumer's path tests nothing per value.

Hooks are called synchronously, in the task where the event happens, so they
must be quick and must not block. A hook that raises an ``Exception`` is
logged (logger ``conveyor``) and that instrument is detached from the run for
the rest of it; the run itself goes on (trio does the same with its
instruments). ``BaseException``s propagate.

Times are the backend's clock (``anyio.current_time()``), in seconds, so they
follow trio's ``MockClock`` or a virtual asyncio loop in tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .statistics import RunStatistics

__all__ = ["CallInfo", "Instrument", "RunInfo"]

#: The hook methods an :class:`Instrument` may override.
HOOKS = (
    "run_started",
    "run_finished",
    "monitor",
    "call_started",
    "call_finished",
    "call_failed",
    "call_retried",
    "values_released",
)


class RunInfo:
    """One run, as instruments see it; the same object for every hook of the run.

    Attributes:
        run_id (str): the run's ``pipeline_id`` (``get_current_context()``).
        stages (tuple[str, ...]): the stage names, in pipeline order.
        kinds (tuple[str, ...]): ``"single"`` or ``"batch"`` for each stage.
        ordered (bool): whether results are released in input order.
        total (int | None): the number of input items when known (``len(data)``),
            else None. An instrument may have its own hint (``Progress(total=)``).
        started_at (float): the backend clock when the run started, in seconds.
        finished_at (float | None): the clock when it finished (in ``run_finished``).
        outcome (str | None): how the run ended, set before ``run_finished``
            (None while it runs); one of:

            - ``"done"``: the input was read to its end and the consumer
              received every result;
            - ``"stopped"``: the consumer ended it early, a normal end and not
              an error: it left the loop or the run's block before the end
              (``break``, ``first()``, ``aclose()``) or called
              ``stop_reading()`` (which cut the input short);
            - ``"failed"``: it ended with an exception (``error``): a call's
              final failure, the input's, or one raised in the run's block;
            - ``"cancelled"``: it was cancelled from outside (a cancel scope or
              timeout around the consumer's wait, ``KeyboardInterrupt``);
              ``error`` is that exception.

            A plain ``async for`` loop left by an exception of its body looks
            like a ``break`` to the run (the loop does not say why it was
            left): ``"stopped"``. Inside ``async with stream.open()`` the
            block's exception is seen.
        error (BaseException | None): the exception of a ``"failed"`` or
            ``"cancelled"`` run, in ``run_finished``; None otherwise.
        state (dict): free room for instruments' own per-run state; use a key
            of your own (the instrument itself is a good one).

    conveyor makes it; the constructor's ``statistics`` argument is the
    function behind :meth:`statistics`.
    """

    __slots__ = (
        "_statistics",
        "error",
        "finished_at",
        "kinds",
        "ordered",
        "outcome",
        "run_id",
        "stages",
        "started_at",
        "state",
        "total",
    )

    def __init__(
        self,
        run_id: str,
        stages: tuple[str, ...],
        kinds: tuple[str, ...],
        *,
        ordered: bool,
        total: int | None,
        started_at: float,
        statistics: Callable[[], RunStatistics],
    ) -> None:
        self.run_id = run_id
        self.stages = stages
        self.kinds = kinds
        self.ordered = ordered
        self.total = total
        self.started_at = started_at
        self.finished_at: float | None = None
        self.outcome: str | None = None
        self.error: BaseException | None = None
        self.state: dict[Any, Any] = {}
        self._statistics = statistics

    def statistics(self) -> RunStatistics:
        """A snapshot of the run now (see :class:`~conveyor.RunStatistics`)."""
        return self._statistics()

    def __repr__(self) -> str:
        return f"<RunInfo {self.run_id} stages={list(self.stages)}>"


class CallInfo:
    """One call: one invocation of a task's function (each retry is a new call).

    Attributes:
        run (RunInfo): the run it belongs to.
        stage (str): the stage's (task's) name.
        stage_index (int): the stage's position in the pipeline, from 0.
        kind (str): ``"single"`` or ``"batch"``.
        value (Any): what the function was called with (for a batch task, the list).
        size (int): input values the call carries: 1, or the batch's length.
        attempt (int): 1 for the first try, 2 for the first retry, ...
        started (float): the backend clock when it started, in seconds.
        duration (float | None): seconds from start to end, set before
            ``call_finished`` / ``call_failed``.
        error (BaseException | None): what the call raised, in ``call_failed``.
            A cancellation (the run stopping) also ends a call this way: every
            ``call_started`` is followed by exactly one ``call_finished`` or
            ``call_failed``; cancellations are never retried or counted as failures.
        retry_delay (float | None): in ``call_retried``, the seconds before the next try.
        paused (float): for a generator's call, which lasts until the generator
            returns, raises or is closed: the seconds of ``duration`` it spent
            paused by backpressure (its values not yet taken); 0.0 otherwise.
        state (dict): free room for instruments' own per-call state.
    """

    __slots__ = (
        "attempt",
        "duration",
        "error",
        "kind",
        "paused",
        "retry_delay",
        "run",
        "size",
        "stage",
        "stage_index",
        "started",
        "state",
        "value",
    )

    def __init__(
        self,
        run: RunInfo,
        stage: str,
        stage_index: int,
        kind: str,
        value: Any,
        attempt: int,
        started: float,
    ) -> None:
        self.run = run
        self.stage = stage
        self.stage_index = stage_index
        self.kind = kind
        self.value = value
        self.size = len(value) if kind == "batch" else 1
        self.attempt = attempt
        self.started = started
        self.duration: float | None = None
        self.error: BaseException | None = None
        self.retry_delay: float | None = None
        self.paused = 0.0
        self.state: dict[Any, Any] = {}

    @property
    def cancelled(self) -> bool:
        """True when the call ended because the run stopped (not a failure)."""
        return self.error is not None and not isinstance(self.error, Exception)

    def __repr__(self) -> str:
        return f"<CallInfo {self.stage} attempt={self.attempt}>"


class Instrument:
    """The base class of instruments: every hook does nothing; override some.

    Only the hooks a subclass overrides are called (so an instrument that
    only watches runs costs nothing per call). Per-call hooks make every
    stage take its instrumented path: about two clock reads and a few
    function calls per call, instead of none.
    """

    __slots__ = ()

    def run_started(self, run: RunInfo) -> None:
        """The run has started: its stages are running and the input is being read."""

    def run_finished(self, run: RunInfo) -> None:
        """The run is over: every worker has stopped (``run.outcome`` says how it ended)."""

    async def monitor(self, run: RunInfo) -> None:
        """A task of the run, started after ``run_started``; it is cancelled when the
        run ends (before ``run_finished``). For periodic work such as refreshing
        a display. An exception raised here is logged and does not fail the run."""

    def call_started(self, call: CallInfo) -> None:
        """A call is about to invoke the function."""

    def call_finished(self, call: CallInfo) -> None:
        """A call returned (for an async function: its coroutine finished)."""

    def call_failed(self, call: CallInfo) -> None:
        """A call raised ``call.error``; a retry, if any, is announced next."""

    def call_retried(self, call: CallInfo) -> None:
        """The failed ``call`` will be tried again after ``call.retry_delay`` seconds."""

    def values_released(self, run: RunInfo, count: int) -> None:
        """``count`` more results were handed to the consumer (called per hand-over,
        not per value, to keep the consumer's path cheap)."""
