"""The stage runner of a batch task.

It gathers values in arrival order (in input order, behind a reorder step,
in ordered mode) and calls the function with a batch of them as soon as it
holds ``max_size`` values or, with ``max_wait``, once its oldest value has
waited that long and it holds at least ``min_size``. Up to
``concurrency_limit`` batch calls run at once. At the end of the input a
remainder of at least ``min_size`` values is processed; a smaller one is
not: a warning says so and a failure record holds the values.

A batch stage ends one window segment and starts the next: gathering an
envelope gives its token back upstream, and each batch's output is admitted
downstream as one envelope numbered by batch, before its call starts and in
batch order (so the earliest batch always has its place: concurrent calls
may finish in any order, and the next reorder step puts them back).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import anyio
from anyio import EndOfStream, WouldBlock
from anyio.abc import TaskGroup
from anyio.lowlevel import checkpoint
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..statistics import StageStatistics
from ._calls import Caller
from ._channels import CHECKPOINT_EVERY, send
from ._eager import Pending
from ._envelope import Chunk, Many, add_values
from ._errors import guarded
from ._expand import stream_expansion
from ._outputs import Expansion
from ._reorder import Completion, Reorder
from ._spec import DEFAULT_CHUNK
from ._stop import Stop, run_stage
from ._window import Slots, Window

if TYPE_CHECKING:
    from ._offload import OffloadCalls

__all__ = ["BatchStage"]

logger = logging.getLogger("conveyor")

#: Timers may fire a hair before their deadline (asyncio rounds to its clock
#: resolution); a deadline this close counts as reached.
_SLACK = 1e-9


class BatchStage:
    """Runs one batch task's calls for one run."""

    def __init__(
        self,
        caller: Caller | OffloadCalls,
        *,
        receive: MemoryObjectReceiveStream[Chunk],
        send: MemoryObjectSendStream[Chunk],
        min_size: int,
        max_size: int,
        upstream: Window,
        downstream: Window,
        run_slots: Slots | None,
        ordered: bool,
        max_wait: float | None = None,
        concurrency_limit: int = 1,
        record_failure: Callable[[Any], None] | None = None,
        stop: Stop | None = None,
    ) -> None:
        self.caller = caller
        self._stop = stop if stop is not None else Stop()
        self._receive = receive
        self._send = send
        self._min_size = min_size
        self._max_size = max_size
        self._max_wait = max_wait
        self._upstream = upstream
        self._downstream = downstream
        self._run_slots = run_slots
        self._slots = Slots(concurrency_limit)
        self._record = record_failure
        self._reorder = Reorder() if ordered else None
        self._completion = Completion()  # (as-completed mode)
        upstream.order = self._reorder  # (see Window.waits_for)
        self._seq = 0
        self._calling = 0
        # Values gathered for the next batches, oldest first, and with
        # max_wait, when they arrived: [how many values, time] per group.
        self._pending: list[Any] = []
        self._arrivals: deque[list[Any]] = deque()
        # Where calls run: None runs each call in the gathering loop (one at
        # a time, no deadline: no task needed); else a task per call.
        self._calls: TaskGroup | None = None
        # A full batch waiting for a call slot, with its number and the event
        # that tells the gathering loop a call took it up (see _call_full_batch).
        self._parked: tuple[list[Any], int, anyio.Event] | None = None
        self.items_received = 0

    def statistics(self) -> StageStatistics:
        """A snapshot of this stage."""
        return StageStatistics(
            name=self.caller.name,
            kind="batch",
            items_received=self.items_received,
            calls_waiting=self._calling,
            concurrency_limit=self._slots.limit,
            input_buffered=self._receive.statistics().current_buffer_used,
        )

    async def run(self) -> None:
        """Batch every input value; close the output after the last batch."""
        await run_stage(self._run, self._stop, self._send)

    async def _run(self) -> None:
        if self._slots.limit == 1 and self._max_wait is None:
            await self._gather()
        else:
            # Calls run in tasks of their own, so that the stage keeps taking
            # values in (and starting their clocks) while calls are in flight.
            async with anyio.create_task_group() as calls:
                self._calls = calls
                await self._gather()

    async def _gather(self) -> None:
        pending = self._pending
        max_size = self._max_size
        ops = 0
        while True:
            try:
                chunk = await self._next_chunk()
            except EndOfStream:
                break
            if chunk is None:  # the oldest value has waited max_wait
                await self._call_due()
                continue
            self.items_received += len(chunk.entries)
            due = self._due(chunk)
            for chunk in due:
                self._add(chunk)
                self._upstream.release((chunk,))
                while len(pending) >= max_size:
                    await self._call_full_batch()
            ops += 1
            if ops == CHECKPOINT_EVERY:
                ops = 0
                await checkpoint()
        if self._reorder is not None and self._reorder.held_values:
            # Never end quietly with values that were never batched.
            raise RuntimeError(
                f"conveyor: internal error: batch task {self.caller.name!r} reached the end "
                f"of its input with {self._reorder.held_values} value(s) still held for order"
            )
        await self._end_of_input()

    async def _next_chunk(self) -> Chunk | None:
        """The next chunk, or None once the pending batch's deadline has come."""
        max_wait = self._max_wait
        if max_wait is None or len(self._pending) < self._min_size or not self._pending:
            try:
                return self._receive.receive_nowait()
            except WouldBlock:
                return await self._wait_for_chunk()
        deadline = self._arrivals[0][1] + max_wait
        if anyio.current_time() + _SLACK >= deadline:
            return None
        try:
            return self._receive.receive_nowait()
        except WouldBlock:
            pass
        # Safe to cancel: anyio never cancels a receiver it has handed an item.
        with anyio.CancelScope(deadline=deadline):
            return await self._wait_for_chunk()
        return None

    async def _wait_for_chunk(self) -> Chunk:
        """Wait for the next chunk; meanwhile, a stuck stage upstream goes on (``_window``)."""
        upstream = self._upstream
        upstream.starving()
        try:
            return await self._receive.receive()
        finally:
            upstream.hungry = False

    def _due(self, chunk: Chunk) -> Sequence[Chunk]:
        """What ``chunk`` lets through to the batches, in order (see ``_reorder``)."""
        if self._reorder is not None:
            return self._reorder.push(chunk)
        if chunk.path:
            return self._completion.push(chunk)
        return (chunk,)

    def _add(self, chunk: Chunk) -> None:
        pending = self._pending
        before = len(pending)
        add_values(pending, chunk)
        if self._max_wait is not None and len(pending) > before:
            # In ordered mode a value's clock starts here, when it reaches
            # the stage in input order.
            self._arrivals.append([len(pending) - before, anyio.current_time()])

    def _cut(self, count: int) -> list[Any]:
        """The oldest ``count`` pending values, as a batch."""
        pending = self._pending
        batch = pending[:count]
        del pending[:count]
        arrivals = self._arrivals
        while count and arrivals:
            oldest = arrivals[0]
            if oldest[0] <= count:
                count -= oldest[0]
                arrivals.popleft()
            else:
                oldest[0] -= count
                count = 0
        return batch

    async def _call_due(self) -> None:
        """Call the batch whose oldest value has waited ``max_wait``."""
        await self._reserve()
        # Take in what arrived while we waited for a free call (its values
        # are as old as they get), up to a full batch.
        pending = self._pending
        while len(pending) < self._max_size:
            try:
                chunk = self._receive.receive_nowait()
            except (WouldBlock, EndOfStream):
                break
            self.items_received += len(chunk.entries)
            due = self._due(chunk)
            for chunk in due:
                self._add(chunk)
                self._upstream.release((chunk,))
        await self._launch(self._cut(min(len(pending), self._max_size)))

    async def _end_of_input(self) -> None:
        pending = self._pending
        while len(pending) >= self._max_size:  # filled up by _call_due's top-up
            await self._call_full_batch()
        if len(pending) >= self._min_size:
            await self._reserve()
            await self._launch(self._cut(len(pending)))
        elif pending:
            self._left_over(self._cut(len(pending)))

    def _left_over(self, values: list[Any]) -> None:
        from ..error_handling import Failure
        from ..exceptions import BatchRemainderError

        name = self.caller.name
        logger.warning(
            "conveyor: batch task %r dropped the last %d item(s): fewer than "
            "min_size=%d were left at the end of the input",
            name,
            len(values),
            self._min_size,
        )
        if self._record is not None:
            error = BatchRemainderError(values, self._min_size, name)
            self._record(Failure(item=values, exception=error, task_name=name, attempts=0))

    async def _reserve(self) -> None:
        """Wait for a place downstream, a call slot and a run slot, in that order.

        Downstream room comes first and never waits while holding a slot:
        the stages that free room downstream may need the run's slots.
        """
        downstream = self._downstream
        await downstream.wait_for_room()
        downstream.admit(1)
        await self._slots.wait_until_free()
        self._slots.take()
        run_slots = self._run_slots
        if run_slots is not None:
            await run_slots.wait_until_free()
            run_slots.take()

    async def _call_full_batch(self) -> None:
        """Call the oldest ``max_size`` pending values.

        When every call slot is taken, the batch is *parked* (admitted
        downstream and numbered first) and the first call to finish takes it
        up in its own task, at once. Waking this loop for the freed slot and
        then starting a task would cost two scheduler passes per batch call;
        with calls back to back, under load, that is about a millisecond per
        wave of calls, and it adds up over a run.
        """
        slots = self._slots
        if self._calls is None or self._run_slots is not None:
            await self._reserve()
            await self._launch(self._cut(self._max_size))
            return
        downstream = self._downstream
        await downstream.wait_for_room()
        downstream.admit(1)
        batch = self._cut(self._max_size)
        if not slots.full():
            slots.take()
            await self._launch(batch)
            return
        taken = anyio.Event()
        self._parked = (batch, self._next_seq(), taken)
        await taken.wait()

    def _take_parked(self) -> tuple[list[Any], int] | None:
        """The parked batch and its number, with a call slot taken for it, if any."""
        parked = self._parked
        if parked is None or self._slots.full() or self._stop.called:
            return None
        self._parked = None
        batch, seq, taken = parked
        self._slots.take()
        taken.set()
        return batch, seq

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq += 1
        return seq

    async def _launch(self, batch: list[Any]) -> None:
        """Start the call for ``batch``, numbered in batch order (after :meth:`_reserve`).

        Without a task group the call runs here, and returns when it is done.
        """
        await self._stop.may_start()
        seq = self._next_seq()
        if self._calls is not None:
            self._calls.start_soon(guarded, self._call, batch, seq)
        else:
            await self._call(batch, seq)

    async def _call(self, batch: list[Any], seq: int) -> None:
        """Call the function on ``batch`` (after :meth:`_reserve`); pass its output on.

        Then take up the parked batch, if there is one (see :meth:`_call_full_batch`).
        """
        try:
            while True:
                entry = await self._start_call(batch)
                if type(entry) is Expansion:  # its values stream on as they are made
                    await self._expand(entry, seq)
                else:
                    await send(self._send, Chunk(seq, [entry], 1, type(entry) is Many))
                parked = self._take_parked()
                if parked is None:
                    return
                batch, seq = parked
        except BaseException:
            # A failure or a cancellation: the run is stopping. Say so now, so
            # that no call launched meanwhile starts (see _stop).
            self._stop.set()
            raise

    async def _start_call(self, batch: list[Any]) -> Any:
        """The entry (or expansion) of the call on ``batch``; its slots are given back."""
        self._calling += 1
        try:
            # A call in a task of its own starts when that task first runs: the
            # run may have begun to stop since the launch, and the cancellation
            # may not have reached this task yet (see _stop).
            await self._stop.may_start()
            entry = self.caller.start(batch)
            if type(entry) is Pending:
                entry = await entry
        finally:
            self._calling -= 1
            self._slots.give_back()
            if self._run_slots is not None:
                self._run_slots.give_back()
        return entry

    async def _expand(self, expansion: Expansion, seq: int) -> None:
        """Stream a batch call's values; the call stays in flight until they are made."""
        self._slots.take()  # (given back just now, with no checkpoint since)
        self._calling += 1
        caller = self.caller
        assert isinstance(caller, Caller), "offloaded results arrive whole, never expand"
        try:
            await stream_expansion(
                expansion,
                (seq,),
                self._send,
                self._downstream,
                caller,
                DEFAULT_CHUNK,
                None,
                self._run_slots,
            )
        finally:
            self._calling -= 1
            self._slots.give_back()
