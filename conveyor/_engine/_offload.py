"""The stage runner of a task whose calls run elsewhere: processes, a cluster.

An :class:`OffloadStage` takes chunks from its input, ships their values in
*round trips* (several calls each, see ``_remote``) through an offloader
(the engine's one seam to executors: ``workers``, and ``await run(func,
payload)``), and sends each round trip's results on as a piece of the input
chunk, numbered like it: so results that come back out of order simply
travel as separate pieces, and the ordered output puts them back in place.

Limits count calls, never round trips: ``concurrency_limit=N`` caps the
calls in flight. Without it at most two round trips per worker are in flight,
so that a worker finds its next round trip waiting when it finishes one.

The size of a round trip tunes itself (see :class:`_Sizer`) unless the task
sets ``chunk_size``. Each call keeps its own error policy: a failed call is
retried alone, handed to the error handler, skipped with its own
``Failure`` record (with the remote traceback), or fails the run.
"""

from __future__ import annotations

import contextvars
import itertools
import math
import pickle
from collections.abc import Callable
from concurrent.futures import CancelledError as FutureCancelled
from time import perf_counter
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import anyio
from anyio import EndOfStream
from anyio.abc import TaskGroup
from anyio.lowlevel import checkpoint
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..exceptions import RemoteTraceback
from ..statistics import StageStatistics
from ._calls import CallPolicy, give_up
from ._channels import CHECKPOINT_EVERY, receive, send
from ._eager import drive
from ._envelope import EMPTY, Chunk, Many, entry_from_list, values_of
from ._errors import guarded
from ._notes import describe_item
from ._remote import PROTOCOL, Outcome, call_all, pickling_errors, portable, run_calls
from ._stop import Stop, run_stage
from ._window import Slots

if TYPE_CHECKING:
    from ..error_handling import Failure
    from ..instrumentation import CallInfo
    from ._instrument import StageHooks

T = TypeVar("T")

__all__ = ["OffloadCalls", "OffloadStage", "Offloader"]

#: Seconds of work a tuned round trip carries at least, and at most.
TRIP_MIN = 0.05
TRIP_MAX = 0.25
#: A round trip carries at least this many times its own overhead in work.
OVERHEAD_FACTOR = 20


class Offloader(Protocol):
    """Where round trips run; made per run by ``conveyor.executors``."""

    name: str
    workers: int
    #: True when calls run in this process (threads): nothing is pickled.
    in_process: bool

    async def run(self, func: Callable[..., T], *args: Any, trip: list[Any] | None = None) -> T:
        """``func(*args)`` where the round trips run. ``trip``: a list that
        gets the round trip's ``concurrent.futures.Future``, when its state
        tells what the round trip did (see ``_started_in``)."""
        ...


class OffloadCalls:
    """One task's calls, shipped through an offloader, under the task's error policy."""

    #: The run's starting context (set by the run, as for ``Caller``): each
    #: call in a thread pool runs in a copy of it; calls in other processes
    #: run in a copy of their worker's own context each.
    context: contextvars.Context | None = None

    def __init__(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        name: str,
        policy: CallPolicy,
        record_failure: Callable[[Failure], None],
        offloader: Offloader,
        hooks: StageHooks | None = None,
        stop: Stop | None = None,
    ) -> None:
        self.name = name
        self._hooks = hooks
        #: The run's stop flag (see ``_stop``): after it, nothing is submitted.
        self._stop = stop if stop is not None else Stop()
        # Counted per call, never per round trip (api.md §6).
        self.calls_started = 0
        self.calls_finished = 0
        self.calls_failed = 0
        self.calls_retried = 0
        self.offloader = offloader
        cancel_pending = getattr(offloader, "cancel_pending", None)
        if cancel_pending is not None:  # queued calls are cancelled at the stop
            self._stop.on_stop(cancel_pending)
        self._policy = policy
        self._record = record_failure
        self._bucket = policy.rate_limiter()
        self._call_parts = (portable(func), args, kwargs)
        self._direct = (func, args, kwargs) if offloader.in_process else None
        if self._direct is not None:
            return
        try:
            # Checked once at the start of the run: the per-round-trip pickling
            # then only fails for a value.
            pickle.dumps(self._call_parts, PROTOCOL)
        except Exception as exc:
            raise TypeError(
                f"task {name!r} cannot run in {offloader.name}: its function or side inputs "
                f"cannot be pickled ({type(exc).__name__}: {exc}). Define the function at the "
                "top level of an importable module (or of the __main__ script) and pass "
                "picklable side inputs"
            ) from exc

    # -- round trips ------------------------------------------------------

    def _payload(self, values: list[Any]) -> tuple[bytes | None, dict[int, Exception]]:
        """The pickled round trip of ``values`` that can be pickled; the others' errors."""
        func, args, kwargs = self._call_parts
        marker = getattr(self.offloader, "stop_marker", None)  # (see run_calls)
        try:
            return pickle.dumps((func, args, kwargs, values, marker), PROTOCOL), {}
        except Exception:
            pass
        bad: dict[int, Exception] = {}
        for index, exc in pickling_errors(values).items():
            problem = TypeError(
                f"task {self.name!r} cannot send item {describe_item(values[index])} to "
                f"{self.offloader.name}: it cannot be pickled ({type(exc).__name__}: {exc})"
            )
            problem.__cause__ = exc
            bad[index] = problem
        good = [value for index, value in enumerate(values) if index not in bad]
        if not good:
            return None, bad
        return pickle.dumps((func, args, kwargs, good, marker), PROTOCOL), bad

    async def round_trip(
        self, values: list[Any], attempt: int = 1
    ) -> tuple[list[Outcome], float, list[CallInfo] | None]:
        """One outcome per value, the worker's seconds, and each call's report.

        Counts the calls and reports them to the run's instruments, if any.
        After the run's stop it submits nothing: it waits for its cancellation.
        A round trip that the stop cuts short counts, reports and charges
        only the calls its worker started, as far as that is known (see
        :meth:`_cut_short`).
        """
        bucket = self._bucket
        costs: list[float] | None = None  # tokens taken for each call of this round trip
        try:
            if bucket is not None:  # every attempt of every call, before it is sent
                cost = self._policy.cost
                costs = []
                for value in values:
                    tokens = 1 if cost is None else cost(value)
                    await bucket.acquire(tokens)
                    costs.append(tokens)
            # The last await before the submit (a round trip's task may also
            # start only after the stop): from here to the submit none follows.
            await self._stop.may_start()
        except BaseException:
            if bucket is not None and costs:
                bucket._give_back(sum(costs))  # no call of the trip starts
            raise
        hooks = self._hooks
        # Counted as started once sent, so that statistics show the calls in
        # flight; a stop that cuts the round trip short takes back the rest.
        self.calls_started += len(values)
        # Announced from the reply, which tells which calls started.
        calls = [hooks.prepare(value, attempt) for value in values] if hooks is not None else None
        skipped: list[int] = []  # filled in if the stop cuts the round trip short
        try:
            outcomes, seconds = await self._ship(values, skipped)
        except BaseException as exc:  # a cancellation: reported, never handled
            self._cut_short(skipped, costs, calls, exc)
            raise
        for index, outcome in enumerate(outcomes):
            if hooks is not None and calls is not None:
                hooks.announce(calls[index])
            if outcome[0]:
                self.calls_finished += 1
                if hooks is not None and calls is not None:
                    hooks.finished(calls[index])
            else:
                self.calls_failed += 1
                if outcome[2] is not None and outcome[1].__cause__ is None:
                    outcome[1].__cause__ = RemoteTraceback(outcome[2])
                if hooks is not None and calls is not None:
                    hooks.failed(calls[index], outcome[1])
        return outcomes, seconds, calls

    def _cut_short(
        self,
        skipped: list[int],
        costs: list[float] | None,
        calls: list[CallInfo] | None,
        exc: BaseException,
    ) -> None:
        """The stop cancelled a round trip: settle its calls from what is known.

        ``skipped``: the indices of the calls that never started, as far as
        the worker's reply (or, in a thread pool, its tickets) tells; empty
        when nothing is known (see ``docs/scaling.md``, Stopping): then every
        call counts as started. The skipped calls are neither counted nor
        announced, and their tokens go back to the rate limiter; the others
        are announced and reported as cancelled.
        """
        if skipped:
            self.calls_started -= len(skipped)
            if costs:
                assert self._bucket is not None
                self._bucket._give_back(sum(costs[index] for index in skipped))
        hooks = self._hooks
        if hooks is not None and calls is not None:
            left_out = set(skipped)
            for index, call in enumerate(calls):
                if index not in left_out:
                    hooks.announce(call)
                    hooks.failed(call, exc)

    async def _ship(self, values: list[Any], skipped: list[int]) -> tuple[list[Outcome], float]:
        """One outcome per value, and the seconds the worker spent on the calls.

        A value that cannot be pickled fails its own call only; a round trip
        that fails as a whole (the pool broke, the attempt timed out) fails
        each of its calls the same way. If the stop cuts the round trip
        short, this puts the indices of the calls that never started, as
        far as known, in ``skipped``, and raises the cancellation.
        """
        if self._direct is not None:
            return await self._direct_round_trip(values, skipped)
        payload, bad = self._payload(values)
        outcomes: list[Outcome] = []
        seconds = 0.0
        if payload is not None:
            trip: list[Any] = []  # the round trip's future, if the offloader tells it
            try:
                timeout = self._policy.timeout
                if timeout is None:
                    reply = await self.offloader.run(run_calls, payload, trip=trip)
                else:
                    with anyio.fail_after(timeout):
                        reply = await self.offloader.run(run_calls, payload, trip=trip)
                outcomes, seconds = pickle.loads(reply)
            except Exception as exc:
                if isinstance(exc, FutureCancelled) and self._stop.called:
                    # The stop cancelled the future (see cancel_pending): its
                    # calls never started, unless a cluster ran them anyway.
                    remote = getattr(self.offloader, "remote", False)
                    skipped.extend(_not_started(len(values), bad, None if remote else 0))
                    await self._stop.wait_for_cancellation()
                outcomes = [(False, exc, None)] * (len(values) - len(bad))
            except BaseException:
                skipped.extend(_not_started(len(values), bad, _started_in(trip)))
                raise
            if len(outcomes) < len(values) - len(bad):  # the worker saw the stop
                skipped.extend(_not_started(len(values), bad, len(outcomes)))
                await self._stop.wait_for_cancellation()
        if bad:  # the calls that could not be sent, back in their places
            shipped = iter(outcomes)
            outcomes = [
                (False, bad[index], None) if index in bad else next(shipped)
                for index in range(len(values))
            ]
        return outcomes, seconds

    async def _direct_round_trip(
        self, values: list[Any], skipped: list[int]
    ) -> tuple[list[Outcome], float]:
        """A round trip to threads of this process: no pickling either way."""
        assert self._direct is not None
        context = self.context if self.context is not None else contextvars.copy_context()
        tickets = itertools.count()  # (see call_all)
        try:
            timeout = self._policy.timeout
            stop = self._stop
            run = self.offloader.run
            if timeout is None:
                reply = await run(call_all, *self._direct, values, context, stop, tickets)
            else:
                with anyio.fail_after(timeout):
                    reply = await run(call_all, *self._direct, values, context, stop, tickets)
        except Exception as exc:
            if isinstance(exc, FutureCancelled) and self._stop.called:
                # No thread took it up: the ticket is 0, no call started.
                skipped.extend(range(next(tickets), len(values)))
                await self._stop.wait_for_cancellation()
            return [(False, exc, None)] * len(values), 0.0
        except BaseException:
            # The thread may still be at it: the ticket taken here is the
            # number of calls it started, and it starts no other.
            skipped.extend(range(next(tickets), len(values)))
            raise
        if len(reply[0]) < len(values):  # the pool's thread saw the stop: calls left out
            skipped.extend(range(len(reply[0]), len(values)))
            await self._stop.wait_for_cancellation()
        return reply

    async def settle(self, value: Any, outcome: Outcome, call: CallInfo | None = None) -> Any:
        """The output entry of one call's first outcome, after the policy if it failed."""
        if outcome[0]:
            return _entry(outcome[1])
        return await self._recover(value, outcome, call)

    async def _recover(self, value: Any, outcome: Outcome, call: CallInfo | None) -> Any:
        """Retry a failed call alone, as the policy allows; then give up."""
        policy = self._policy
        attempt = 1
        exc, remote = outcome[1], outcome[2]
        while policy.may_retry(exc, attempt):
            delay = policy.delay_after(attempt, exc)
            self.calls_retried += 1
            if self._hooks is not None and call is not None:
                self._hooks.retried(call, delay)
            await anyio.sleep(delay)
            attempt += 1
            outcomes, _, calls = await self.round_trip([value], attempt)
            outcome = outcomes[0]
            if outcome[0]:
                return _entry(outcome[1])
            exc, remote = outcome[1], outcome[2]
            call = calls[0] if calls is not None else None
        return await self._give_up(value, exc, remote, attempt)

    async def _give_up(self, value: Any, exc: Exception, remote: str | None, attempts: int) -> Any:
        replaced, entry = await give_up(
            self._policy,
            exc,
            value,
            attempts,
            name=self.name,
            record=self._record,
            where=f" in {self.offloader.name}",
            remote=remote,
        )
        return _entry(entry) if replaced else entry

    # -- one call at a time (batch stages) --------------------------------

    async def call(self, value: Any) -> Any:
        """One call in a round trip of its own; its output entry."""
        outcomes, _, calls = await self.round_trip([value])
        return await self.settle(value, outcomes[0], calls[0] if calls is not None else None)

    def start(self, value: Any) -> Any:
        """What a batch stage calls: the call's entry, or a :class:`Pending` for it."""
        return drive(self.call(value))


def _started_in(trip: list[Any]) -> int | None:
    """How many calls of a cut round trip started, from its future if the
    offloader gave it (see ``Offloader.run``): None when unknown."""
    if not trip:
        return None
    future = trip[0]
    if future.cancelled():  # the stop cancelled it before a worker took it
        return 0
    if not future.done() or future.exception() is not None:
        return None  # still running (its worker cannot see the stop), or broke
    outcomes, _ = pickle.loads(future.result())
    return len(outcomes)


def _not_started(count: int, bad: dict[int, Exception], started: int | None) -> list[int]:
    """The indices, among ``count`` values, of the calls that never started:
    those that could not be sent, and those the worker skipped after its
    first ``started`` shipped calls (None: unknown, so none)."""
    if started is None:
        return sorted(bad)
    shipped = [index for index in range(count) if index not in bad]
    return sorted([*bad, *shipped[started:]])


def _entry(result: Any) -> Any:
    """The entry for a result that came back whole: the output rule of inline
    calls, except that a list arrives whole rather than streamed."""
    if result is None:
        return EMPTY
    if isinstance(result, list):
        return entry_from_list(result)
    return result


def _cut(entries: list[Any], start: int, size: int, many: bool) -> tuple[int, list[Any]]:
    """The next round trip from ``entries[start]`` on: its end, and its values.

    It carries about ``size`` calls of whole entries: at least the first
    entry, whose values (an entry of several) travel together.
    """
    count = len(entries)
    if not many:
        end = min(count, start + size)
        return end, entries[start:end]
    values: list[Any] = []
    end = start
    while end < count and (end == start or len(values) < size):
        values.extend(values_of(entries[end]))
        end += 1
    return end, values


class _Sizer:
    """How many calls the next round trip carries.

    A fixed ``chunk_size`` wins. Otherwise the first round trips carry one
    call each; from then on a round trip carries about
    ``max(TRIP_MIN, OVERHEAD_FACTOR * overhead)`` seconds of work (at most
    ``TRIP_MAX``; few round trips leave the event loop's process, which
    pickles and schedules them, most of the CPU for the workers), where the
    time per call and the overhead per round trip (round-trip time minus the
    worker's time) are running averages. So calls
    of microseconds travel in big chunks and a call of 100 ms travels alone.
    """

    __slots__ = ("fixed", "overhead", "per_call")

    def __init__(self, fixed: int | None) -> None:
        self.fixed = fixed
        self.per_call: float | None = None
        self.overhead = 0.0

    def size(self, cap: int) -> int:
        if self.fixed is not None:
            return max(1, min(self.fixed, cap))
        if self.per_call is None:
            return 1
        target = min(max(TRIP_MIN, OVERHEAD_FACTOR * self.overhead), TRIP_MAX)
        return max(1, min(cap, int(target / max(self.per_call, 1e-7))))

    def measured(self, calls: int, worker_seconds: float, round_trip_seconds: float) -> None:
        per_call = worker_seconds / calls
        overhead = max(0.0, round_trip_seconds - worker_seconds)
        if self.per_call is None:
            self.per_call, self.overhead = per_call, overhead
        else:
            self.per_call = 0.7 * self.per_call + 0.3 * per_call
            self.overhead = 0.7 * self.overhead + 0.3 * overhead


class _Job:
    """An input chunk whose round trips are under way."""

    __slots__ = ("chunk", "done", "many")

    def __init__(self, chunk: Chunk) -> None:
        self.chunk = chunk
        self.done = 0  # entries finished
        self.many = chunk.many


class OffloadStage:
    """Runs one single task's calls through an offloader, for one run."""

    def __init__(
        self,
        calls: OffloadCalls,
        *,
        receive: MemoryObjectReceiveStream[Chunk],
        send: MemoryObjectSendStream[Chunk],
        limit: int | None,
        run_slots: Slots | None,
        chunk_size: int | None,
        max_chunk: int,
        stop: Stop | None = None,
    ) -> None:
        self.caller = calls
        self._stop = stop if stop is not None else Stop()
        self._receive = receive
        self._send = send
        self._run_slots = run_slots
        workers = calls.offloader.workers
        self._limit = limit  # calls in flight, if the task set concurrency_limit
        self._max_trips = math.inf if limit is not None else 2 * workers
        self._max_chunk = max_chunk
        if limit is not None:  # enough round trips to keep every worker busy
            self._max_chunk = max(1, min(max_chunk, limit // workers))
        if run_slots is not None:
            self._max_chunk = min(self._max_chunk, run_slots.limit)
        if calls._policy.timeout is not None:
            chunk_size = 1  # a timeout bounds one call: each travels alone
        self._sizer = _Sizer(chunk_size)
        self._calls = 0  # calls in flight
        self._trips = 0  # round trips in flight
        self._freed: anyio.Event | None = None
        self.items_received = 0

    def statistics(self) -> StageStatistics:
        """A snapshot of this stage; ``calls_waiting`` counts calls in round trips."""
        return StageStatistics(
            name=self.caller.name,
            kind="single",
            items_received=self.items_received,
            calls_waiting=self._calls,
            concurrency_limit=self._limit or int(self._max_trips * self._max_chunk),
            input_buffered=self._receive.statistics().current_buffer_used,
        )

    async def run(self) -> None:
        """Ship every input chunk's calls; close the output once all are back."""
        await run_stage(self._run, self._stop, self._send)

    async def _run(self) -> None:
        ops = 0
        async with anyio.create_task_group() as tg:
            while True:
                try:
                    chunk = await receive(self._receive)
                except EndOfStream:
                    break
                self.items_received += len(chunk.entries)
                await self._dispatch(chunk, tg)
                ops += 1
                if ops == CHECKPOINT_EVERY:
                    ops = 0
                    await checkpoint()

    async def _dispatch(self, chunk: Chunk, tg: TaskGroup) -> None:
        """Cut ``chunk`` into round trips of whole entries and start each."""
        job = _Job(chunk)
        entries = chunk.entries
        count = len(entries)
        if not count:  # the closing chunk of an expansion: only its tail to pass on
            await send(self._send, chunk)
            return
        i = 0
        while i < count:
            end, values = _cut(entries, i, self._sizer.size(self._max_chunk), chunk.many)
            if not values:  # dropped items only: they keep their place
                await self._deliver(job, i, end, entries[i:end])
                i = end
                continue
            await self._room_for(len(values))
            slots = 0
            if self._run_slots is not None:
                slots, end, values = await self._take_run_slots(entries, i, end, values, chunk.many)
            if self._stop.called:  # after the stop nothing new is submitted
                self._give_back(slots)
                await self._stop.wait_for_cancellation()
            self._trips += 1
            self._calls += len(values)
            tg.start_soon(guarded, self._round_trip, job, i, end, values, slots)
            i = end

    async def _room_for(self, calls: int) -> None:
        """Wait until this stage's limits let a round trip of ``calls`` calls start."""
        limit = self._limit
        while self._trips >= self._max_trips or (
            limit is not None and self._calls and self._calls + calls > limit
        ):
            freed = self._freed
            if freed is None:
                freed = self._freed = anyio.Event()
            await freed.wait()

    async def _take_run_slots(
        self, entries: list[Any], start: int, end: int, values: list[Any], many: bool
    ) -> tuple[int, int, list[Any]]:
        """Take the run's slots for the round trip of ``entries[start:end]``.

        Returns the slots taken and the round trip, cut to what they allow.
        Never waits while holding a slot: stages that each held part of the
        run's slots while waiting for the rest would wait for each other
        forever. So this waits for one free slot, takes what is free now (up
        to what the round trip needs) and cuts the round trip to that many
        calls. Only an entry of several values that cannot travel apart
        waits, holding nothing, until its calls' slots are free together.
        """
        run_slots = self._run_slots
        assert run_slots is not None
        await run_slots.wait_until_free()
        free = run_slots.limit - run_slots.used
        if min(len(values), run_slots.limit) > free:
            end, values = _cut(entries, start, free, many)
            need = min(len(values), run_slots.limit)
            if need > free:  # the first entry alone: wait, holding nothing, for its slots
                await run_slots.wait_until_free(need)
        slots = min(len(values), run_slots.limit)
        for _ in range(slots):  # no await from the last look at the slots to here
            run_slots.take()
        return slots, end, values

    def _release(self, calls: int, slots: int) -> None:
        """A round trip of ``calls`` calls holding ``slots`` of the run's slots is over."""
        self._trips -= 1
        self._calls -= calls
        self._give_back(slots)
        freed = self._freed
        if freed is not None:
            self._freed = None
            freed.set()

    def _give_back(self, slots: int) -> None:
        run_slots = self._run_slots
        if run_slots is not None:
            for _ in range(slots):
                run_slots.give_back()

    async def _round_trip(
        self, job: _Job, start: int, end: int, values: list[Any], slots: int
    ) -> None:
        """Run the calls of entries ``start:end`` of ``job``'s chunk; pass them on."""
        calls = self.caller
        try:
            began = perf_counter()
            outcomes, seconds, reports = await calls.round_trip(values)
            if seconds:
                self._sizer.measured(len(values), seconds, perf_counter() - began)
            results = [
                _entry(outcome[1])
                if outcome[0]
                else await calls.settle(
                    value, outcome, reports[index] if reports is not None else None
                )
                for index, (value, outcome) in enumerate(zip(values, outcomes, strict=True))
            ]
        finally:
            self._release(len(values), slots)
        entries = job.chunk.entries
        if not job.chunk.many:
            new = results
        else:  # an entry of several values gets the results of all its calls
            new, at = [], 0
            for entry in entries[start:end]:
                width = len(values_of(entry))
                if type(entry) is Many:
                    parts = results[at : at + width]
                    new.append(entry_from_list([v for part in parts for v in values_of(part)]))
                else:
                    new.append(results[at])
                at += width
        await self._deliver(job, start, end, new)

    async def _deliver(self, job: _Job, start: int, end: int, new: list[Any]) -> None:
        """Entries ``start:end`` are finished: send them on as a piece, if the chunk allows."""
        chunk = job.chunk
        many = job.many or any(type(entry) is Many for entry in new)
        job.many = many
        count = len(chunk.entries)
        chunk.entries[start:end] = new
        job.done += end - start
        if (
            not chunk.path
            and not chunk.end
            and chunk.weight == count
            and (start, end) != (0, count)
        ):
            # Input items, one token each: any run of them can travel on its own.
            await send(self._send, Chunk(chunk.seq + start, new, end - start, many))
        elif job.done == count:  # otherwise the chunk travels whole, once done
            chunk.many = many
            await send(self._send, chunk)
