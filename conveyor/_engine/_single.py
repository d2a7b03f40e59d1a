"""The stage runner of a single task: many calls at once, up to a limit.

One task at a time is the stage's *leader*: it takes chunks from the stage's
input and starts calls one after another, rewriting each entry in place. A
call that finishes without suspending (a sync function, or a cheap coroutine)
costs no task switch, so a chunk of cheap calls goes on as one chunk. When a
call really suspends, the leader sends on what it finished, hands the rest of
the chunk to a new leader task, and stays behind to finish that one call. So
calls that await never wait for each other, and the number of tasks is
bounded by the number of calls suspended at once: the stage's limit.

An entry that holds several values (its item expanded upstream) is called
once per value; a :class:`_Join` puts the results back together.
"""

from __future__ import annotations

from time import perf_counter as clock
from types import CoroutineType
from typing import Any

import anyio
from anyio import ClosedResourceError, EndOfStream, WouldBlock
from anyio.abc import TaskGroup
from anyio.lowlevel import checkpoint
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..statistics import StageStatistics
from ._calls import Caller
from ._channels import CHECKPOINT_EVERY, receive, send
from ._eager import Pending
from ._envelope import EMPTY, Chunk, Many, entry_from_list, values_of
from ._errors import guarded
from ._outputs import SCALAR, _kinds
from ._spec import DEFAULT_CHUNK
from ._window import Slots

__all__ = ["TIME_SLICE", "SingleStage"]

#: Seconds of back-to-back calls after which a leader passes its finished
#: results on and yields, so that slow sync functions still stream.
TIME_SLICE = 0.002
#: Fast calls: look at the clock every this many calls.
CHECK_EVERY = 16
#: Blocks of quick, plain, sync calls after which a stage switches to map().
MAP_AFTER_BLOCKS = 2
CHECK_EVERY_S = TIME_SLICE / CHECK_EVERY


class _Join:
    """The calls of one entry that holds several values.

    While every call finishes at once the result is written in place. Once a
    call suspends the join is *split*: its result travels as a chunk of its
    own, whole in ordered mode, piece by piece in as-completed mode (the last
    piece carrying the entry's window token).
    """

    __slots__ = ("left", "ordered", "parts", "seq", "split", "weight")

    def __init__(self, seq: int, count: int, weight: int, ordered: bool) -> None:
        self.seq = seq
        self.weight = weight
        self.ordered = ordered
        self.left = count
        self.parts: list[Any] = [EMPTY] * count
        self.split = False

    def entry(self) -> Any:
        """All parts as one entry, in their order."""
        return entry_from_list([value for part in self.parts for value in values_of(part)])

    def split_off(self) -> Chunk | None:
        """Called at the first suspension: in as-completed mode, release what is done."""
        self.split = True
        if self.ordered:
            return None
        done = [value for part in self.parts for value in values_of(part)]
        self.parts = [EMPTY] * len(self.parts)
        return Chunk(self.seq, [entry_from_list(done)], 0, True) if done else None

    def add(self, index: int, entry: Any) -> Chunk | None:
        """Record part ``index``; after a split, return the chunk to send, if any."""
        self.left -= 1
        if self.split and not self.ordered:
            if self.left == 0:
                return Chunk(self.seq, [entry], self.weight, True)
            return None if entry is EMPTY else Chunk(self.seq, [entry], 0, True)
        self.parts[index] = entry
        if self.left or not self.split:
            return None
        return Chunk(self.seq, [self.entry()], self.weight, True)


#: Where to lead from: (chunk, entry, value, join, finished chunks to send first).
_Lead = tuple[Chunk | None, int, int, "_Join | None", tuple[Chunk, ...]]


class SingleStage:
    """Runs one single task's calls for one run."""

    def __init__(
        self,
        caller: Caller,
        *,
        receive: MemoryObjectReceiveStream[Chunk],
        send: MemoryObjectSendStream[Chunk],
        limit: int,
        run_slots: Slots | None,
        ordered: bool,
        chunk_size: int = DEFAULT_CHUNK,
    ) -> None:
        self.caller = caller
        self._chunk_size = chunk_size  # the most finished entries sent on together
        self._receive = receive
        self._send = send
        self._slots = Slots(limit)
        self._run_slots = run_slots
        self._ordered = ordered
        self._made_many = False  # sticky: some output entry may be a Many
        self._parked: _Lead | None = None  # the lead, waiting for a worker with a free slot
        self._backup_woken = False  # a worker was woken (or started) for the parked lead
        # Calls that proved sync, quick and plain run under map() (see _lead).
        self._map_ok = False
        self._plain_blocks = 0
        self.items_received = 0
        self._tg: TaskGroup | None = None
        # Idle workers wait here to be woken for a parked lead (no buffer).
        self._handoff_send, self._handoff_receive = anyio.create_memory_object_stream[None](0)

    async def run(self) -> None:
        """Process every input chunk; close the output once all calls are done."""
        with self._handoff_send, self._handoff_receive:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                await self._work((None, 0, 0, None, ()))
        # Only a stage that finished closes its output: after a failure the
        # next stage must not take the missing rest for a normal end.
        self._send.close()

    async def _work(self, lead: _Lead | None) -> None:
        """A worker task: lead until a call suspends, finish that call, repeat.

        The lead is never handed to a particular task: it is *parked*, and the
        first worker that runs with a slot free takes it up. When many calls
        finish at once, each of their workers starts the next call in the
        same scheduler pass; an idle worker is woken as well, in case none
        comes by.
        """
        while True:
            if lead is not None and not await self._lead(*lead):
                return
            lead = self._take_parked()
            while lead is None:
                try:
                    await self._handoff_receive.receive()
                except (EndOfStream, ClosedResourceError):
                    return
                self._backup_woken = False
                lead = self._take_parked()

    async def _back_up(self) -> None:
        """A new worker, started because no idle one was there to wake."""
        self._backup_woken = False
        await self._work(self._take_parked())

    def _take_parked(self) -> _Lead | None:
        parked = self._parked
        if parked is None or self._slots.full():
            return None
        self._parked = None
        return parked

    def _pass_lead(self, lead: _Lead) -> None:
        """Park the lead for the next worker that comes by, and wake one to be sure."""
        self._parked = lead
        if self._backup_woken:  # one is on its way already
            return
        self._backup_woken = True
        try:
            self._handoff_send.send_nowait(None)
        except WouldBlock:
            assert self._tg is not None
            self._tg.start_soon(guarded, self._back_up)

    def statistics(self) -> StageStatistics:
        """A snapshot of this stage."""
        return StageStatistics(
            name=self.caller.name,
            kind="single",
            items_received=self.items_received,
            calls_waiting=self._slots.used,
            concurrency_limit=self._slots.limit,
            input_buffered=self._receive.statistics().current_buffer_used,
        )

    async def _settle_block(self, done: list[Any], entries: list[Any], start: int) -> list[Any]:
        """Apply the output rule to results of a map() block that are not plain values.

        A result to await here means the function was not the sync one it
        seemed: it is awaited (this once) and map() is given up for the run.
        """
        resume = self.caller.resume
        settled = []
        for offset, result in enumerate(done):
            if _kinds.get(type(result)) != SCALAR:
                result = resume(result, entries[start + offset])
                if type(result) is Pending:
                    self._map_ok = False
                    result = await result
                if type(result) is Many:
                    self._made_many = True
            settled.append(result)
        return settled

    def _piece(self, chunk: Chunk, first: int, end: int) -> Chunk:
        """Entries ``first:end`` of ``chunk``, to send on (the chunk itself if whole)."""
        entries = chunk.entries
        many = chunk.many or self._made_many
        if first == 0 and end == len(entries):
            chunk.many = many
            return chunk
        # Only whole chunks can hold a weight other than one token per entry.
        assert chunk.weight == len(entries)
        return Chunk(chunk.seq + first, entries[first:end], end - first, many)

    async def _lead(
        self, chunk: Chunk | None, i: int, j: int, join: _Join | None, carry: tuple[Chunk, ...]
    ) -> bool:
        """Lead from entry ``i`` of ``chunk`` (its value ``j``, if ``join``) on.

        ``carry`` holds finished chunks the previous leader could not send.
        Returns False when the input is exhausted (idle workers are then told
        to stop), or True after handing the lead on and finishing the call
        that suspended.
        """
        for finished in carry:
            await send(self._send, finished)
        caller = self.caller
        start, call, resume = caller.start, caller.plain_call, caller.resume
        kinds_get = _kinds.get
        slots, run_slots, ordered = self._slots, self._run_slots, self._ordered
        chunk_size = self._chunk_size
        ops = 0
        while True:
            if chunk is None:
                try:
                    chunk = await receive(self._receive)
                except EndOfStream:
                    self._handoff_send.close()
                    return False
                self.items_received += len(chunk.entries)
                i = 0
                ops += 1
                if ops == CHECKPOINT_EVERY:
                    ops = 0
                    await checkpoint()
            entries = chunk.entries
            count = len(entries)
            many = chunk.many
            started = clock()
            deadline = started + TIME_SLICE
            countdown = 1  # calls until the next look at the clock
            plain_results = True  # every call so far returned a plain value at once
            first = i + 1 if join is not None else i  # entries[first:i] are done, unsent
            pending: Pending[Any] | None = None
            while i < count:
                # Slots only free up while we await, so one check per await is enough.
                if slots.used >= slots.limit or (
                    run_slots is not None and run_slots.used >= run_slots.limit
                ):
                    if i > first:
                        await send(self._send, self._piece(chunk, first, i))
                        first = i
                    if slots.used >= slots.limit:
                        # Park the lead: the next call of this stage to finish takes
                        # it up at once, without a task switch.
                        if join is not None and not join.split:
                            piece = join.split_off()
                            if piece is not None:
                                await send(self._send, piece)
                        self._parked = (chunk, i, j, join, ())
                        return True
                    # The run's max_parallelism is what is full: wait for any stage.
                    assert run_slots is not None
                    await run_slots.wait_until_free()
                if call is not None:
                    end = min(count, first + chunk_size)
                    if self._map_ok and not many:
                        # The hottest loop: a function that has shown itself sync and
                        # quick runs under map(), in blocks between looks at the clock.
                        while i < end:
                            block_end = min(end, i + CHECK_EVERY)
                            done: list[Any] = []
                            try:
                                done.extend(map(call, entries[i:block_end]))
                            except Exception as exc:
                                raise caller.failed(exc, entries[i + len(done)])  # noqa: B904
                            for result_type in set(map(type, done)):
                                if kinds_get(result_type) != SCALAR:
                                    done = await self._settle_block(done, entries, i)
                                    break
                            entries[i:block_end] = done
                            i = block_end
                            now = clock()
                            if now >= deadline:
                                countdown = 0
                                break
                            if now - started > CHECK_EVERY_S * (i - first):
                                self._map_ok = False  # calls got slow: one by one again
                                break
                    # The hot loop: plain entries, a plain function, no awaits.
                    while i < end and countdown:
                        entry = entries[i]
                        if many and type(entry) is Many:
                            break
                        try:
                            result = call(entry)
                            if type(result) is CoroutineType:
                                # Run it here until it finishes or really waits.
                                plain_results = False
                                try:
                                    yielded = result.send(None)
                                except StopIteration as stop:
                                    result = stop.value
                                else:
                                    pending = caller.suspended(result, yielded, entry)
                                    break
                        except Exception as exc:
                            raise caller.failed(exc, entry)  # noqa: B904
                        if kinds_get(type(result)) != SCALAR:
                            plain_results = False
                            result = resume(result, entry)
                            if type(result) is Pending:
                                pending = result
                                break
                            if type(result) is Many:
                                self._made_many = True
                        entries[i] = result
                        i += 1
                        countdown -= 1
                        if not countdown:
                            now = clock()
                            if now >= deadline:
                                break
                            # Look at the clock often only when calls are slow.
                            countdown = 1 if now - started > CHECK_EVERY_S else CHECK_EVERY
                    if (
                        pending is None
                        and plain_results
                        and not self._map_ok
                        and i - first >= CHECK_EVERY
                        and clock() - started < CHECK_EVERY_S * (i - first)
                    ):
                        # Quick calls with plain results all along: map() them from now on.
                        self._plain_blocks += 1
                        self._map_ok = self._plain_blocks >= MAP_AFTER_BLOCKS
                    if pending is not None or i == count:
                        break
                    if i == end:  # a full chunk: pass it on
                        await send(self._send, self._piece(chunk, first, i))
                        first = i
                        continue
                    if not countdown:
                        # Slow calls: pass on what is done and let others run.
                        if i > first:
                            await send(self._send, self._piece(chunk, first, i))
                            first = i
                        await checkpoint()
                        started = clock()
                        deadline = started + TIME_SLICE
                        countdown = 1
                        continue
                entry = entries[i]
                if many and type(entry) is Many:
                    values = entry.values
                    if not values:  # a dropped item keeps its place
                        i += 1
                        continue
                    if join is None:
                        join = _Join(chunk.seq + i, len(values), _weight_of(chunk), ordered)
                        self._made_many = True
                    outcome = start(values[j])
                    if type(outcome) is Pending:
                        pending = outcome
                        break
                    ready = join.add(j, outcome)
                    j += 1
                    if ready is not None:
                        await send(self._send, ready)
                    if j < len(values):
                        continue
                    if not join.split:
                        entries[i] = join.entry()
                    join, j = None, 0
                    i += 1
                    continue
                outcome = start(entry)
                if type(outcome) is Pending:
                    pending = outcome
                    break
                if type(outcome) is Many:
                    self._made_many = True
                entries[i] = outcome
                i += 1
                if i - first >= chunk_size:
                    await send(self._send, self._piece(chunk, first, i))
                    first = i
            if pending is None:
                if count > first:
                    await send(self._send, self._piece(chunk, first, count))
                chunk, join, j = None, None, 0
                continue
            await self._hand_over(chunk, first, i, j, join, pending)
            return True

    async def _hand_over(
        self, chunk: Chunk, first: int, i: int, j: int, join: _Join | None, pending: Pending[Any]
    ) -> None:
        """Entry ``i`` (value ``j``) suspended: lead on elsewhere, finish it here."""
        carry: list[Chunk] = []
        if i > first:
            carry.append(self._piece(chunk, first, i))
        weight = _weight_of(chunk)
        if join is not None and not join.split:
            piece = join.split_off()
            if piece is not None:
                carry.append(piece)
        # The next position to lead from.
        if join is not None and j + 1 < len(chunk.entries[i].values):  # more values here
            self._pass_lead((chunk, i, j + 1, join, tuple(carry)))
        elif i + 1 < len(chunk.entries):
            self._pass_lead((chunk, i + 1, 0, None, tuple(carry)))
        else:
            self._pass_lead((None, 0, 0, None, tuple(carry)))
        # Nothing may checkpoint before the suspended call is awaited.
        slots, run_slots = self._slots, self._run_slots
        slots.take()
        if run_slots is not None:
            run_slots.take()
        try:
            entry = await pending
        finally:
            slots.give_back()
            if run_slots is not None:
                run_slots.give_back()
        if join is None:
            many = type(entry) is Many
            if many:
                self._made_many = True
            await send(self._send, Chunk(chunk.seq + i, [entry], weight, many))
        else:
            ready = join.add(j, entry)
            if ready is not None:
                await send(self._send, ready)


def _weight_of(chunk: Chunk) -> int:
    """The window tokens one entry of ``chunk`` holds."""
    return chunk.weight if len(chunk.entries) == 1 else 1
