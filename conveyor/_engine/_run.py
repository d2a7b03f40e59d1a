"""One run of a pipeline, as a structured scope.

``RunScope`` is what ``pipeline.open(data)`` returns. Entering it starts the
feeder and every stage in one anyio task group; the block's body reads the
results from a :class:`ResultStream`; leaving the block (normally, by
``break``, by an exception or by cancellation) cancels the task group first,
waits for every worker, closes the streams second, and turns what went wrong
into the one exception the consumer should see (see ``_errors``).
"""

from __future__ import annotations

import contextvars
import copy
import sys
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from time import perf_counter as wall_clock
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio
import anyio.to_thread
from anyio import ClosedResourceError, EndOfStream, WouldBlock
from anyio.abc import TaskGroup
from anyio.lowlevel import checkpoint
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..instrumentation import RunInfo
from ..statistics import RunStatistics
from ._backend import cancellation_check, current_clock
from ._batch import BatchStage
from ._calls import Caller
from ._envelope import Chunk, add_values, values_of
from ._errors import guarded, reraise, settle_and_report
from ._feeder import Intake, feed
from ._inputs import resolve_all
from ._instrument import Dispatch
from ._logs import run_as_stage
from ._offload import OffloadCalls, OffloadStage
from ._outputs import Expansion, settle_result
from ._reorder import Completion, Reorder
from ._runvars import current_run_context
from ._single import SingleStage
from ._spec import DEFAULT_CHUNK, DEFAULT_WINDOW, StageSpec
from ._stats import stage_statistics
from ._stop import Stop
from ._timing import CallTimer
from ._window import Slots, Window

if TYPE_CHECKING:
    from ._instrument import StageHooks

if sys.version_info >= (3, 11):
    from typing import Self
else:  # pragma: no cover
    from typing_extensions import Self

__all__ = ["CANCEL_CHECK_EVERY", "NO_DATA", "ResultStream", "RunPlan", "RunScope"]

#: A consumer passes a cancel point at least once every this many results.
CANCEL_CHECK_EVERY = 32
#: Seconds (wall clock) a consumer of ready results may go without letting the
#: event loop run: deadlines and other tasks' cancels reach it within about this.
SCHEDULE_EVERY = 0.005

T = TypeVar("T")

#: A stage runner, whichever kind.
Stage = SingleStage | BatchStage | OffloadStage
#: The run's instruments as one, the run as they see it, and its call timer.
Instrumented = tuple[Dispatch, RunInfo, CallTimer | None]


class _NoData:
    """The marker for ``pipeline()`` called without data: its first stage is the source."""

    def __repr__(self) -> str:
        return "NO_DATA"


NO_DATA: Any = _NoData()

_ONE_ITEM = (str, bytes, bytearray, memoryview, tuple, dict)


@dataclass(frozen=True)
class RunPlan:
    """Everything one run needs; built by ``Pipeline`` for each call."""

    stages: tuple[StageSpec, ...]
    data: Any = NO_DATA
    args: tuple[Any, ...] | None = None  # replaces the first stage's positional side inputs
    kwargs: dict[str, Any] = field(default_factory=dict)  # merged over its keyword ones
    ordered: bool = True
    context: Any = None  # the pipeline's PipelineContext template
    max_parallelism: int | None = None
    instruments: tuple[Any, ...] = ()  # the pipeline's, then the run's own
    call_timing: int = 0  # reservoir size for call-duration percentiles; 0: off


class ResultStream(AsyncIterator[T], Generic[T]):
    """The results of one run, in the run's release order.

    Read it with ``async for`` inside the run's block. It ends when the run
    has released everything; once the block is left it yields nothing more.
    """

    def __init__(
        self,
        receive: MemoryObjectReceiveStream[Chunk],
        window: Window,
        ordered: bool,
        failures: list[Any],
        first_window: Window | None = None,
        stages: tuple[Stage, ...] = (),
        *,
        clock: Callable[[], float] | None = None,
        on_released: Callable[[int], None] | None = None,
        timer: tuple[CallTimer, RunInfo] | None = None,
        intake: Intake | None = None,
        stop: Stop | None = None,
    ) -> None:
        #: The run's stop flag (see ``_stop``).
        self.stop = stop if stop is not None else Stop()
        self._receive = receive
        self._intake = intake if intake is not None else Intake()
        self._window = window
        self._first_window = first_window if first_window is not None else window
        self._stages = stages
        self._reorder = Reorder() if ordered else None
        self._completion = Completion()
        window.order = self._reorder  # (see Window.waits_for)
        # Released values wait in ``_pending`` and move to ``_ready`` at most
        # CANCEL_CHECK_EVERY at a time, with a cancel point between moves, so
        # the per-result fast path (``__anext__``) is a bare pop.
        self._ready: deque[T] = deque()
        self._pending: list[T] = []
        self._pending_at = 0  # _pending[:_pending_at] already moved to _ready
        self._unchecked = 0  # values moved to _ready since the last cancel point
        self._loop_ran_at = wall_clock()  # when the consumer last let the loop run
        # The backend's checkpoint_if_cancelled, looked up once: anyio's own
        # finds the backend at each call, a third of the check's cost.
        self._if_cancelled = cancellation_check()
        self._released = 0
        self._clock = clock if clock is not None else current_clock()
        self._started_at = self._clock()
        self.ended_at: float | None = None  # set when the run is over: elapsed stops
        self.at_end = False  # the consumer was told the results ended (an outcome)
        self._on_released = on_released  # the instruments' values_released hook
        self._timer = timer
        #: Items or batches skipped by an ``on_error`` policy, as ``Failure`` records.
        self.failures = failures

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        # The fast path (HostedIterator.__anext__ does the same): a released
        # value already moved to ``_ready``; anything else is ``next_slow``.
        ready = self._ready
        if ready:
            return ready.popleft()
        return await self.next_slow()

    async def next_slow(self) -> T:
        """The next result once ``_ready`` is empty: refilled, waiting if needed.

        Iteration is a cancel point at least every CANCEL_CHECK_EVERY results
        (docs/concurrency.md), so a cancelled consumer stops soon even when
        every result is ready at once. It is a cancel point without a schedule
        point (yielding this often would cut throughput by a third), except
        when the consumer has not let the event loop run for SCHEDULE_EVERY
        seconds: a deadline that expired, or a cancel made by another task,
        is seen only once the loop runs.
        """
        ready = self._ready
        while not ready:
            if self._unchecked >= CANCEL_CHECK_EVERY:
                self._unchecked = 0
                now = wall_clock()
                if now - self._loop_ran_at >= SCHEDULE_EVERY:
                    self._loop_ran_at = now
                    await checkpoint()
                else:
                    await self._if_cancelled()
            if self._pending_at == len(self._pending):
                await self._refill()
            self._move_to_ready()
        return ready.popleft()

    def _move_to_ready(self) -> None:
        """Move released values to ``_ready``, no more than the cancel point allows."""
        pending, at = self._pending, self._pending_at
        end = min(len(pending), at + CANCEL_CHECK_EVERY - self._unchecked)
        self._ready.extend(pending[at:end])
        self._unchecked += end - at
        if end == len(pending):
            pending.clear()
            end = 0
        self._pending_at = end

    async def _refill(self) -> None:
        """Wait for the next chunk and release what it lets out into ``_pending``."""
        pending = self._pending
        window = self._window
        while not pending:
            try:
                try:
                    chunk = self._receive.receive_nowait()
                except WouldBlock:
                    window.starving()  # (see _window: a stuck stage must go on)
                    try:
                        chunk = await self._receive.receive()
                    finally:
                        window.hungry = False
                    self._loop_ran_at = wall_clock()
            except (EndOfStream, ClosedResourceError):
                await checkpoint()  # inside a failed run's block, raises its cancellation
                if self._reorder is not None and self._reorder.held_values and not self.stop.called:
                    # A run that ended normally never leaves values unreleased.
                    raise RuntimeError(
                        f"conveyor: internal error: the run ended with "
                        f"{self._reorder.held_values} value(s) still held for order"
                    ) from None
                error = self._intake.take_error()
                if error is not None:  # everything read before it is released: now the error
                    reraise(error)
                self.at_end = True
                raise StopAsyncIteration from None
            due: Sequence[Chunk]
            if self._reorder is not None:
                due = self._reorder.push(chunk)
            elif chunk.path:  # (see Completion)
                due = self._completion.push(chunk)
            else:
                due = (chunk,)
            tokens = 0
            for chunk in due:
                add_values(pending, chunk)
                tokens += chunk.weight
                if chunk.path:  # an expansion's values: their call may make more
                    window.released(chunk)
            window.give_back(tokens)
            released = len(pending)
            self._released += released
            if self._on_released is not None and released:
                self._on_released(released)

    def stop_reading(self) -> None:
        """Read no more input; finish the items read so far, then end normally.

        Every item already read from the input is processed and released as
        usual (so iteration goes on until they are out), the input is closed,
        and then the results end as if the input had ended. Call it from any
        task of the run's event loop (a signal handler's, say), at any time,
        as often as you like; it does not wait. Calls that are in flight are
        not interrupted: to abandon the work in flight, cancel the run instead.
        """
        self._intake.stop()

    def _held_for_order(self) -> int:
        """Finished values that wait for an earlier one: in the reorder step, or
        still in the channel in front of it (the consumer has not read them)."""
        reorder = self._reorder
        if reorder is None:
            return 0
        held = reorder.held_values
        # The channel's buffer (anyio keeps it in the stream's shared state):
        # a chunk the release waits for, and those that follow on from it,
        # wait only for the consumer.
        follows: tuple[tuple[int, ...], int] | None = None
        for chunk in self._receive._state.buffer:
            count = len(chunk.entries)
            if (chunk.path, chunk.seq) == follows or reorder.waits_for((*chunk.path, chunk.seq)):
                follows = (chunk.path, chunk.seq + count)
            else:
                held += count
        return held

    def statistics(self) -> RunStatistics:
        """A snapshot of the run: what was read, what is in flight, each stage."""
        window = self._first_window
        now = self.ended_at if self.ended_at is not None else self._clock()
        elapsed = now - self._started_at
        reservoirs = None
        if self._timer is not None:
            timer, run = self._timer
            reservoirs = timer.reservoirs(run)
        return RunStatistics(
            items_read=window.admitted,
            items_in_flight=window.in_flight,
            window=window.size,
            results_released=self._released,
            held_for_order=self._held_for_order(),
            failures=len(self.failures),
            stages=tuple(
                stage_statistics(
                    stage, elapsed, reservoirs[index] if reservoirs is not None else None
                )
                for index, stage in enumerate(self._stages)
            ),
            elapsed=elapsed,
        )


def _as_iterator(data: Any) -> Iterator[Any] | AsyncIterator[Any]:
    """The input rule: which values of ``data`` are the run's input items."""
    if isinstance(data, _ONE_ITEM):
        return iter((data,))
    if hasattr(data, "__aiter__"):
        iterator: AsyncIterator[Any] = data.__aiter__()
        return iterator
    if hasattr(data, "__iter__"):
        items: Iterator[Any] = iter(data)
        return items
    return iter((data,))


async def _feed_from_source(
    caller: Caller,
    out: MemoryObjectSendStream[Chunk],
    window: Window,
    chunk_size: int,
    intake: Intake,
) -> None:
    """Run a zero-input first stage once; what it returns or yields is the input."""
    result = await caller.source_result()
    if not (hasattr(result, "__aiter__") or isinstance(result, Iterator)):
        result = await settle_result(result)
        result = result.source if type(result) is Expansion else iter(values_of(result))
    await feed(
        _as_iterator(result), out, window, chunk_size, intake, f"source task {caller.name!r}"
    )


class RunScope(Generic[T]):
    """``async with pipeline.open(data) as stream``: one structured run."""

    def __init__(self, plan: RunPlan, failures: list[Any] | None = None) -> None:
        self._plan = plan
        self._stop = Stop()
        self._tg: TaskGroup | None = None
        # Every stream of the run, closed once all its workers are gone.
        self._streams: list[MemoryObjectSendStream[Chunk] | MemoryObjectReceiveStream[Chunk]] = []
        #: ``Failure`` records of items or batches a skip policy dropped, as they happen.
        self.failures: list[Any] = failures if failures is not None else []
        #: The run's input: how it ended, and the switch that stops reading it.
        self.intake = Intake()
        #: The run's result stream, once the run has started.
        self.results: ResultStream[T] | None = None
        # The run's instruments and what they know of it (None: none attached).
        self._dispatch: Dispatch | None = None
        self._run_info: RunInfo | None = None
        # Set by end_early: (why the consumer's side ended the run,), None: not so.
        self._early: tuple[BaseException | None] | None = None

    async def __aenter__(self) -> ResultStream[T]:
        if self._tg is not None:
            raise RuntimeError("this run has already been started; open the pipeline again")
        tg = self._tg = anyio.create_task_group()
        await tg.__aenter__()
        try:
            return await self._start(tg)
        except BaseException as exc:
            self._stop.set()
            tg.cancel_scope.cancel()
            try:
                await tg.__aexit__(type(exc), exc, exc.__traceback__)
            except BaseException as group:
                problem = settle_and_report(group, exc)
            else:
                problem = exc
            finally:
                self._close_streams()
            if problem is exc:
                raise
            reraise(problem)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        assert self._tg is not None
        self._stop.set()
        self._tg.cancel_scope.cancel()
        problem: BaseException | None = None
        try:
            suppressed = await self._tg.__aexit__(exc_type, exc, tb)
        except BaseException as group:
            problem = settle_and_report(group, exc)
            suppressed = False
        finally:
            self._close_streams()
            if self.results is not None:
                self.results.ended_at = self.results._clock()
            if self._dispatch is not None:
                self._finished(*self._outcome(problem if problem is not None else exc))
            self._early = None  # (it may hold an exception, and its frames)
        if problem is not None and problem is not exc:
            reraise(problem)
        return bool(suppressed)

    def _close_streams(self) -> None:
        for stream in self._streams:
            stream.close()

    def _channel(
        self, size: int
    ) -> tuple[MemoryObjectSendStream[Chunk], MemoryObjectReceiveStream[Chunk]]:
        send, receive = anyio.create_memory_object_stream[Chunk](size)
        self._streams += (send, receive)
        return send, receive

    def _record_failure(self, failure: Any) -> None:
        self.failures.append(failure)

    def end_early(self, cause: BaseException | None = None) -> None:
        """Say why the run's block is about to be cancelled from the consumer's side.

        A plain ``async for`` runs the block in a host task and cancels it when
        the consumer leaves: ``cause`` None for a stop (``break``, ``aclose()``),
        else the exception that reached the consumer (its own cancellation,
        say). The host's cancellation then stands for that, not for itself.
        """
        if self._early is None:
            self._early = (cause,)

    def _outcome(self, error: BaseException | None) -> tuple[str, BaseException | None]:
        """How the run ended (see ``RunInfo.outcome``), and its error if any."""
        if (
            self._early is not None
            and error is not None
            and isinstance(error, anyio.get_cancelled_exc_class())
        ):
            error = self._early[0]  # the host's own cancellation: the consumer's reason
        if error is not None:
            return ("failed" if isinstance(error, Exception) else "cancelled"), error
        if self.intake.raised is not None:  # the input failed; the consumer caught it
            return "failed", self.intake.raised
        assert self.results is not None
        if self.results.at_end and not self.intake.cut_short:
            return "done", None
        return "stopped", None

    def _finished(self, outcome: str, error: BaseException | None) -> None:
        """Tell the instruments the run is over (every worker has stopped)."""
        run, dispatch = self._run_info, self._dispatch
        assert run is not None
        assert dispatch is not None
        assert self.results is not None
        run.finished_at = self.results.ended_at
        run.outcome = outcome
        run.error = error
        dispatch.fire("run_finished", run)

    def _statistics(self) -> RunStatistics:
        assert self.results is not None
        return self.results.statistics()

    def _instrument(
        self, run_context: Any, specs: list[StageSpec], clock: Callable[[], float]
    ) -> Instrumented | None:
        """The run's instruments as one, and the run as they see it; None if none."""
        plan = self._plan
        timer = CallTimer(plan.call_timing) if plan.call_timing else None
        instruments = plan.instruments + ((timer,) if timer is not None else ())
        if not instruments:
            return None
        staged = specs[1:] if plan.data is NO_DATA else specs  # a source is no stage
        run = RunInfo(
            run_context.pipeline_id,
            tuple(spec.name for spec in staged),
            tuple("batch" if spec.batch else "single" for spec in staged),
            ordered=plan.ordered,
            total=_length_of(plan.data),
            started_at=clock(),
            statistics=self._statistics,
        )
        return Dispatch(instruments), run, timer

    async def _start(self, tg: TaskGroup) -> ResultStream[T]:
        """Build the run's callers, start its feeder and stages in ``tg``, and
        return the stream of its results."""
        plan = self._plan
        run_context = _fresh_context(plan.context)
        specs = list(plan.stages)
        clock = current_clock()
        instrumented = self._instrument(run_context, specs, clock)
        callers = await self._callers(specs, instrumented, clock)
        # The run's context is current while the workers start (each task
        # copies it) and in the context every call copies.
        token = current_run_context.set(run_context)
        start_context = contextvars.copy_context()
        for caller in callers:
            caller.context = start_context
        try:
            receive, first_window, window, stages = self._start_workers(tg, specs, callers)
            self.results = self._result_stream(
                receive, first_window, window, stages, clock, instrumented
            )
            if instrumented is not None:
                self._announce(tg, instrumented)
        finally:
            current_run_context.reset(token)
        return self.results

    # -- callers: one per task, with its side inputs and policy ------------

    async def _callers(
        self,
        specs: list[StageSpec],
        instrumented: Instrumented | None,
        clock: Callable[[], float],
    ) -> list[Caller | OffloadCalls]:
        """Each task's caller for this run, in order (a source's included)."""
        callers: list[Caller | OffloadCalls] = []
        for index, spec in enumerate(specs):
            # Side inputs are resolved one task after the other, in order.
            args, kwargs = await resolve_all(*self._side_inputs(index, spec))
            hooks = self._hooks(index, spec, instrumented, clock)
            callers.append(self._caller(index, spec, args, kwargs, hooks))
        return callers

    def _side_inputs(self, index: int, spec: StageSpec) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The task's side inputs; the run's own arguments go to its first task."""
        plan = self._plan
        args, kwargs = spec.args, spec.kwargs
        if index == 0:
            if plan.args is not None:
                args = plan.args
            if plan.kwargs:
                kwargs = {**kwargs, **plan.kwargs}
        return args, kwargs

    def _hooks(
        self,
        index: int,
        spec: StageSpec,
        instrumented: Instrumented | None,
        clock: Callable[[], float],
    ) -> StageHooks | None:
        """The instruments' hooks for the task's calls; None for a source or no instrument."""
        # A pipeline with no data: its first task is the source, not a stage.
        first_stage = 1 if self._plan.data is NO_DATA else 0
        if instrumented is None or index < first_stage:
            return None
        dispatch, run, _ = instrumented
        kind = "batch" if spec.batch else "single"
        return dispatch.stage_hooks(run, spec.name, index - first_stage, kind, clock)

    def _caller(
        self,
        index: int,
        spec: StageSpec,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        hooks: StageHooks | None,
    ) -> Caller | OffloadCalls:
        """The caller of one task: offloaded to its executor, or run in the event loop."""
        is_source = index == 0 and self._plan.data is NO_DATA
        if spec.offload is None:
            return Caller(
                spec.func,
                args,
                kwargs,
                name=spec.name,
                policy=spec.policy,
                record_failure=self._record_failure,
                thread_limiter=_thread_limiter(spec),
                takes_item=not is_source,
                hooks=hooks,
                stop=self._stop,
            )
        if is_source:
            raise TypeError(
                f"task {spec.name!r} takes no item, so it is a source, and a source "
                "runs in the event loop: drop its executor="
            )
        return OffloadCalls(
            spec.func,
            args,
            kwargs,
            name=spec.name,
            policy=spec.policy,
            record_failure=self._record_failure,
            offloader=spec.offload(),
            hooks=hooks,
            stop=self._stop,
        )

    # -- workers: the feeder and the stages, linked by channels ------------

    def _start_workers(
        self, tg: TaskGroup, specs: list[StageSpec], callers: list[Caller | OffloadCalls]
    ) -> tuple[MemoryObjectReceiveStream[Chunk], Window, Window, list[Stage]]:
        """Start the feeder and every stage in ``tg``.

        Returns the last channel's receiving end, the first and the last
        window, and the stages.
        """
        source = self._take_source(specs, callers)
        run_slots = Slots(self._plan.max_parallelism) if self._plan.max_parallelism else None
        window = first_window = Window(_window_size(specs, 0))
        send, receive = self._channel(window.size)
        self._start_feeder(tg, source, send, window, _feed_chunk(specs))
        stages: list[Stage] = []
        for index, (spec, caller) in enumerate(zip(specs, callers, strict=False)):
            if spec.batch:
                # A batch stage ends one window segment and starts the next.
                # Room for every batch in flight, and as many finished.
                calls = spec.concurrency_limit or 1
                downstream = Window(max(_window_size(specs, index + 1), 2 * calls))
                send, next_receive = self._channel(downstream.size)
                stage: Stage = self._batch_stage(
                    spec, caller, receive, send, window, downstream, run_slots
                )
                label = "batch stage"
                window = downstream
            else:
                send, next_receive = self._channel(window.size)
                if isinstance(caller, OffloadCalls):
                    stage = self._offload_stage(spec, caller, receive, send, window, run_slots)
                    label = "offload stage"
                else:
                    stage = self._single_stage(spec, caller, receive, send, window, run_slots)
                    label = "stage"
            tg.start_soon(
                guarded, run_as_stage, spec.name, stage.run, name=f"conveyor {label} {spec.name}"
            )
            stages.append(stage)
            receive = next_receive
        return receive, first_window, window, stages

    def _take_source(
        self, specs: list[StageSpec], callers: list[Caller | OffloadCalls]
    ) -> Caller | None:
        """Without data, take the first task out of ``specs`` and ``callers``: it is the source."""
        if self._plan.data is not NO_DATA:
            return None
        if not callers:
            raise TypeError("a pipeline with no tasks needs data to run on")
        specs.pop(0)
        source = callers.pop(0)
        assert isinstance(source, Caller)  # an offloaded source is refused in _caller
        return source

    def _start_feeder(
        self,
        tg: TaskGroup,
        source: Caller | None,
        send: MemoryObjectSendStream[Chunk],
        window: Window,
        chunk_size: int,
    ) -> None:
        """Start the worker that reads the input (the data, or the source's) into ``send``."""
        if source is not None:
            read, name = partial(_feed_from_source, source), "conveyor source"
        else:
            read, name = partial(feed, _as_iterator(self._plan.data)), "conveyor feeder"
        tg.start_soon(guarded, read, send, window, chunk_size, self.intake, name=name)

    def _batch_stage(
        self,
        spec: StageSpec,
        caller: Caller | OffloadCalls,
        receive: MemoryObjectReceiveStream[Chunk],
        send: MemoryObjectSendStream[Chunk],
        upstream: Window,
        downstream: Window,
        run_slots: Slots | None,
    ) -> BatchStage:
        return BatchStage(
            caller,
            receive=receive,
            send=send,
            min_size=spec.min_size,
            max_size=spec.max_size,
            upstream=upstream,
            downstream=downstream,
            run_slots=run_slots,
            ordered=self._plan.ordered,
            max_wait=spec.max_wait,
            concurrency_limit=spec.concurrency_limit or 1,
            record_failure=self._record_failure,
            stop=self._stop,
        )

    def _offload_stage(
        self,
        spec: StageSpec,
        caller: OffloadCalls,
        receive: MemoryObjectReceiveStream[Chunk],
        send: MemoryObjectSendStream[Chunk],
        window: Window,
        run_slots: Slots | None,
    ) -> OffloadStage:
        return OffloadStage(
            caller,
            receive=receive,
            send=send,
            limit=spec.concurrency_limit,
            run_slots=run_slots,
            chunk_size=spec.chunk_size,
            # Without a chunk_size, a round trip carries at most a quarter
            # of the window, so that several fit in it at once.
            max_chunk=spec.chunk_size or max(1, min(DEFAULT_CHUNK, window.size // 4)),
            stop=self._stop,
        )

    def _single_stage(
        self,
        spec: StageSpec,
        caller: Caller,
        receive: MemoryObjectReceiveStream[Chunk],
        send: MemoryObjectSendStream[Chunk],
        window: Window,
        run_slots: Slots | None,
    ) -> SingleStage:
        return SingleStage(
            caller,
            receive=receive,
            send=send,
            # A stage never has more calls in flight than its window admits items.
            limit=min(spec.concurrency_limit or window.size, window.size),
            run_slots=run_slots,
            window=window,
            stop=self._stop,
            chunk_size=spec.chunk_size or DEFAULT_CHUNK,
        )

    # -- results and instruments --------------------------------------------

    def _result_stream(
        self,
        receive: MemoryObjectReceiveStream[Chunk],
        first_window: Window,
        window: Window,
        stages: list[Stage],
        clock: Callable[[], float],
        instrumented: Instrumented | None,
    ) -> ResultStream[T]:
        """The consumer's end of the last channel, wired to the run's instruments."""
        on_released = timer = None
        if instrumented is not None:
            dispatch, run, call_timer = instrumented
            # Only an instrument that asks for released values costs a call per chunk.
            if dispatch.defines("values_released"):
                on_released = partial(dispatch.fire, "values_released", run)
            if call_timer is not None:
                timer = (call_timer, run)
        return ResultStream(
            receive,
            window,
            self._plan.ordered,
            self.failures,
            first_window,
            tuple(stages),
            clock=clock,
            on_released=on_released,
            timer=timer,
            intake=self.intake,
            stop=self._stop,
        )

    def _announce(self, tg: TaskGroup, instrumented: Instrumented) -> None:
        """Tell the instruments the run has started; start their monitors in ``tg``."""
        dispatch, run, _ = instrumented
        self._dispatch, self._run_info = dispatch, run
        dispatch.fire("run_started", run)
        dispatch.start_monitors(tg, run)


def _thread_limiter(spec: StageSpec) -> anyio.CapacityLimiter | None:
    """The limiter of a ``run_in_thread`` task's threads; None for other tasks."""
    if not spec.in_thread:
        return None
    if spec.concurrency_limit:
        return anyio.CapacityLimiter(spec.concurrency_limit)
    # AnyIO's default limiter, which all runs share, so that concurrent runs
    # do not multiply threads.
    return anyio.to_thread.current_default_thread_limiter()


def _length_of(data: Any) -> int | None:
    """How many input items ``data`` holds, when it says so (``len()``)."""
    if data is NO_DATA:
        return None
    if isinstance(data, _ONE_ITEM):
        return 1
    try:
        return len(data)
    except TypeError:
        return None


def _feed_chunk(specs: list[StageSpec]) -> int:
    """How many input items travel together: the first stage's chunk size."""
    if specs and specs[0].chunk_size:
        return specs[0].chunk_size
    return DEFAULT_CHUNK


#: The window of a segment with a process or cluster stage (no concurrency_limit).
OFFLOAD_WINDOW = 1024


def _window_size(specs: list[StageSpec], start: int) -> int:
    """The window of the segment that starts at stage ``start``."""
    size = DEFAULT_WINDOW
    for spec in specs[start:]:
        if spec.batch:
            break
        if spec.concurrency_limit:
            size = max(size, 2 * spec.concurrency_limit)
        elif spec.offload is not None:
            # Round trips to processes or a cluster carry up to 128 calls each,
            # two per worker in flight: room for several of them.
            size = max(size, OFFLOAD_WINDOW)
    return size


def _fresh_context(template: Any) -> Any:
    """This run's own copy of the pipeline's context, with a new id."""
    from ..context import PipelineContext

    if template is None:
        return PipelineContext(pipeline_id=str(uuid.uuid4()))
    context = copy.copy(template)
    context.data = dict(template.data)
    context.pipeline_id = str(uuid.uuid4())
    return context
