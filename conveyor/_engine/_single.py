"""The stage runner of a single task: many calls at once, up to a limit.

One task at a time is the stage's *leader*: it takes chunks from the stage's
input and starts calls one after another, rewriting each entry in place. A
call that finishes without suspending (a sync function, or a cheap coroutine)
costs no task switch, so a chunk of cheap calls goes on as one chunk. When a
call really suspends, or expands its value into a stream of values, the
leader sends on what it finished, *parks* the rest of the chunk for the next
worker with a free slot, and stays behind to finish that one call (or to
stream its values, see ``_expand``). So calls that await never wait for each
other, and the number of tasks is bounded by the number of calls in flight
at once: the stage's limit.

The steps, each a method:

- ``_lead``: take chunks from the input until a call suspends;
- ``_through``: run the calls of one chunk from a position on. Its inner
  loop stays inline on purpose: it runs once per value, and a method call
  per value would cost a tenth of the throughput of cheap stages. Inside it,
  a function that has proven sync, quick and plain runs under ``map()`` in
  blocks (``_settle_block`` handles a block whose results were not plain);
- ``_lead_on``: a call suspended or expanded: park the lead for another
  worker (``_lead`` then finishes that call itself, and ``_joined`` adds its
  result to what is sent);
- ``_piece`` / ``_tail``: what is passed on when a chunk is split.

Positions and tokens follow ``_envelope``: the entries written in place keep
their chunk; a value that expands leaves its chunk and becomes a node of its
own; the token and end mark of an expansion's chunk (its *tail*) travel with
whichever piece covers its last position, or alone.
"""

from __future__ import annotations

import logging
from collections import deque
from contextvars import Context
from itertools import repeat
from time import perf_counter as clock
from types import CoroutineType
from typing import Any, Final

import anyio
from anyio import EndOfStream, WouldBlock
from anyio.abc import TaskGroup
from anyio.lowlevel import checkpoint
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..statistics import StageStatistics
from ._backend import cancellation_check
from ._calls import Caller
from ._channels import CHECKPOINT_EVERY, sent_buffer
from ._eager import Pending
from ._envelope import Chunk, Many
from ._errors import guarded
from ._expand import TIME_SLICE, _Pieces, stream_expansion
from ._outputs import SCALAR, Expansion, _kinds
from ._spec import DEFAULT_CHUNK
from ._stop import Stop
from ._window import EXPANSION_ALLOWANCE, Slots, Window

__all__ = ["TIME_SLICE", "SingleStage"]

logger = logging.getLogger("conveyor")

#: Fast calls: look at the clock every this many calls.
CHECK_EVERY = 16
#: Calls under map() between looks at the clock: only calls that take under
#: MAP_BLOCK_S on average run there, so a block stays within a time slice.
#: Calls under half that run in blocks twice as long (one look per chunk).
MAP_BLOCK = 64
MAP_BLOCK_S = TIME_SLICE / MAP_BLOCK
#: Blocks of quick, plain, sync calls after which a stage switches to map().
MAP_AFTER_BLOCKS = 2
CHECK_EVERY_S = TIME_SLICE / CHECK_EVERY
#: Quick async calls: up to this many first steps run in one context between
#: looks at the clock, while that many take under FIRST_STEPS_S on average.
FIRST_STEPS_RUN = 64
FIRST_STEPS_S = TIME_SLICE / 8

#: Spans of taken-up chunks kept before those the release has passed are dropped.
TAKEN_KEPT = 256

#: ``_through`` parked the lead (every slot of the stage is taken).
_PARKED: Final = object()

#: Where to lead from: (chunk, position, finished chunks to send first).
_Lead = tuple[Chunk | None, int, tuple[Chunk, ...]]


#: What ``_first_steps`` stopped at (besides the end of its range).
_SUSPENDED: Final = object()
_FAILED: Final = object()
_OWN: Final = object()


def _first_steps(
    call: Any, entries: list[Any], i: int, end: int, base: Context, shared: Context
) -> tuple[int, Any, Any]:
    """Run the calls of ``entries[i:end]`` (an async function's) up to their first
    suspension, in ``shared``: the context this runs in, a copy of the run's.

    Entering a context per call would cost a tenth of an async stage's
    throughput; running many first steps in one costs a comparison per call
    instead: while a call leaves ``shared`` equal to ``base`` nothing of it
    can be seen by the next call. Stops at the first call that suspends
    (``_SUSPENDED``, with its coroutine and what it yielded), raises
    (``_FAILED``, with the exception), or finishes with a result that is not
    a plain value or a changed context (``_OWN``, with the result: ``shared``
    is then that call's own). Returns ``(position, event, value)``; ``event``
    None means every call finished with a plain value, written in place.
    """
    kinds_get = _kinds.get
    while i < end:
        try:
            coro = call(entries[i])
            if type(coro) is not CoroutineType:
                return i, _OWN, coro
            yielded = coro.send(None)
        except StopIteration as stop:
            value = stop.value
        except Exception as exc:
            return i, _FAILED, exc
        else:
            return i, _SUSPENDED, (coro, yielded)
        if shared != base or kinds_get(type(value)) != SCALAR:
            return i, _OWN, value
        entries[i] = value
        i += 1
    return i, None, None


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
        window: Window,
        stop: Stop,
        chunk_size: int = DEFAULT_CHUNK,
    ) -> None:
        self.caller = caller
        self._stop = stop
        self._chunk_size = chunk_size  # the most finished entries sent on together
        self._receive = receive
        self._send = send
        # Chunks sent and not yet received (see _joined), when anyio's
        # stream lets us see them, and the last one-entry chunk sent.
        self._out_buffer = sent_buffer(send)
        self._last_single: Chunk | None = None
        self._slots = Slots(limit)
        self._run_slots = run_slots
        self._window = window  # the segment's window
        window.stages.append(self)
        #: Expansions of this stage waiting for their values to drain.
        self.waiting: list[_Pieces] = []
        self._warned_stuck = False
        # Ordered mode: (path, first, end) of the chunks the lead took up, whose
        # positions the release may still wait for (see must_go_on).
        self._taken: list[tuple[tuple[int, ...], int, int]] = []
        self._taken_limit = TAKEN_KEPT
        self._expands = False  # it has streamed an expansion (see _took)
        # Pieces of an input chunk split by _explode, to lead from before the next.
        self._backlog: deque[Chunk] = deque()
        self._made_many = False  # sticky: some output entry may be EMPTY
        self._parked: _Lead | None = None  # the lead, waiting for a worker with a free slot
        # The position that may start beyond the limit (see start_waited_for).
        self._beyond: tuple[int, ...] | None = None
        self._backup_woken = False  # a worker was woken (or started) for the parked lead
        # Calls that proved sync, quick and plain run under map() (see _through).
        # The context async calls' first steps share (see _first_steps): a copy
        # of the run's that no call has changed, kept from one chunk to the next.
        self._spare_context = caller.context.copy()
        self._map_ok = False
        self._map_block = MAP_BLOCK  # calls per block under map(): MAP_BLOCK or twice
        self._plain_blocks = 0
        self.items_received = 0
        self._tg: TaskGroup | None = None
        self._if_cancelled = cancellation_check()  # (see _pass_on)
        # Idle workers, each waiting on its event to be woken for a parked lead.
        # (A memory stream's receive() would checkpoint first: a scheduler pass
        # per worker that goes idle, about a tenth of an I/O stage's passes.)
        self._idle: deque[anyio.Event] = deque()
        self._input_done = False  # the input is exhausted: idle workers end

    async def run(self) -> None:
        """Process every input chunk; close the output once all calls are done."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            await self._work((None, 0, ()))
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
        try:
            if lead is None:  # a new worker, started because no idle one was there to wake
                self._backup_woken = False
                if self._stop.called:
                    return
                lead = self._take_parked()
            while True:
                if lead is not None and not await self._lead(*lead):
                    return
                lead = self._take_parked()
                while lead is None:
                    if self._input_done:
                        return
                    woken = anyio.Event()
                    self._idle.append(woken)
                    await woken.wait()
                    self._backup_woken = False
                    lead = self._take_parked()
        except BaseException:
            self._stop.set()  # a failure or a cancellation: the run is stopping
            raise

    def _take_parked(self) -> _Lead | None:
        parked = self._parked
        # Reading the next input needs no slot: a lead at the end of its chunk
        # is taken up anyway, so that a stuck stage sees what comes next
        # (see start_waited_for).
        if parked is None or (self._slots.full() and parked[0] is not None):
            return None
        self._parked = None
        return parked

    def _pass_lead(self, lead: _Lead) -> None:
        """Park the lead for the next worker that comes by, and wake one to be sure."""
        self._parked = lead
        if self._backup_woken or self._stop.called:  # one is on its way, or none is needed
            return
        self._backup_woken = True
        if self._idle:
            self._idle.popleft().set()
        else:
            assert self._tg is not None
            self._tg.start_soon(guarded, self._work, None)

    def _end_idle_workers(self) -> None:
        """The input is exhausted: idle workers end, and so do workers going idle."""
        self._input_done = True
        while self._idle:
            self._idle.popleft().set()

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

    # -- what is passed on --------------------------------------------------

    def _piece(self, chunk: Chunk, first: int, end: int) -> Chunk:
        """Entries ``first:end`` of ``chunk``, to send on (the chunk itself if whole).

        The piece that reaches the chunk's end carries its tail.
        """
        entries = chunk.entries
        many = chunk.many or self._made_many
        count = len(entries)
        if first == 0 and end == count:
            chunk.many = many
            return chunk
        path = chunk.path
        if not path:  # input items: a token each
            return Chunk(chunk.seq + first, entries[first:end], end - first, many)
        if end < count:
            return Chunk(chunk.seq + first, entries[first:end], 0, many, path)
        return Chunk(chunk.seq + first, entries[first:end], chunk.weight, many, path, chunk.end)

    def _tail(self, chunk: Chunk) -> Chunk | None:
        """The tail of ``chunk`` alone, for when its last position left the chunk."""
        if not chunk.end:
            return None
        return Chunk(chunk.seq + len(chunk.entries), [], chunk.weight, False, chunk.path, True)

    async def _pass_on(self, chunk: Chunk) -> None:
        """Send ``chunk`` to the next stage, waiting for room if need be."""
        try:
            self._send.send_nowait(chunk)
        except WouldBlock:
            await self._send.send(chunk)
            # It waited: the run's scope may have been cancelled meanwhile, and
            # the cancellation may not have reached this task yet (see _stop).
            await self._if_cancelled()

    def _explode(self, chunk: Chunk) -> Chunk:
        """``chunk`` with every entry that holds several values made a node of its own.

        A producer that cannot stream (an executor's round trip returns a
        list whole) passes such entries on; this stage calls its function on
        each of their values, as children of the entry's position. Returns
        the first piece; the others wait in the backlog, in order.
        """
        entries = chunk.entries
        pieces: list[Chunk] = []
        first = 0
        for i, entry in enumerate(entries):
            if type(entry) is Many and entry.values:
                if i > first:
                    pieces.append(self._piece(chunk, first, i))
                path = (*chunk.path, chunk.seq + i)
                weight = 1 if len(path) == 1 else 0
                pieces.append(Chunk(0, list(entry.values), weight, False, path, True))
                first = i + 1
        if not pieces:
            return chunk
        if first < len(entries):
            pieces.append(self._piece(chunk, first, len(entries)))
        else:
            tail = self._tail(chunk)
            if tail is not None:
                pieces.append(tail)
        self._backlog.extendleft(reversed(pieces[1:]))
        return pieces[0]

    # -- expansions waiting for their values to drain (see _window) ----------

    def stuck(self) -> bool:
        """Every slot is held by a waiting expansion, and work is queued behind them."""
        parked = self._parked
        return (
            parked is not None
            and len(self.waiting) >= self._slots.used
            and (
                parked[0] is not None
                or bool(parked[2])
                or bool(self._backlog)
                or self._receive.statistics().current_buffer_used > 0
            )
        )

    def going_on_stuck(self) -> None:
        """Warn, once per run, that this stage's expansions go past their memory bound."""
        if self._warned_stuck:
            return
        self._warned_stuck = True
        logger.warning(
            "conveyor: every slot of stage %r (concurrency_limit=%d) is held by an "
            "expansion of a later item, and an earlier item waits for a slot: those "
            "expansions go on beyond the memory bound until one ends (an endless one "
            "never does). Raise the stage's concurrency_limit, or use as_completed "
            "mode (docs/concurrency.md, 'Expansions and memory')",
            self.caller.name,
            self._slots.limit,
        )

    def unstick(self) -> None:
        """The consumer waits: if this stage is stuck, it goes on (see _window)."""
        if self.waiting and self.must_go_on():
            for pieces in self.waiting:
                pieces.wake()

    def must_go_on(self) -> bool:
        """The consumer waits: must this stage's waiting expansions go past their bound?

        Only when the stage is stuck (see _window), the release does not wait
        for a position this stage has taken up already (its values are on
        their way: as they are released, the expansions ahead of them go on
        within their bound, end and free their slots), and the call it waits
        for cannot start beyond the limit.
        """
        if not self.stuck() or self._release_waits_for_taken():
            return False
        return not self.start_waited_for()

    def _took(self, chunk: Chunk) -> None:
        """The lead takes ``chunk`` up (ordered mode: noted for must_go_on).

        Only once the stage has streamed an expansion: a stage can be stuck
        only then, and a position it took up before and did not note counts
        as not taken up (the safe side: its expansions go on).
        """
        order = self._window.order
        if order is None or not self._expands:
            return
        taken = self._taken
        taken.append((chunk.path, chunk.seq, chunk.seq + len(chunk.entries)))
        if len(taken) > self._taken_limit:  # forget what the release has passed
            frontier = order.frontier()
            self._taken = [span for span in taken if frontier < (*span[0], span[2])]
            self._taken_limit = max(TAKEN_KEPT, 2 * len(self._taken))

    def _release_waits_for_taken(self) -> bool:
        """True when the release waits for a position the lead has taken up."""
        order = self._window.order
        if order is None:
            return False
        frontier = order.frontier()
        lead, i = self._parked[:2] if self._parked is not None else (None, 0)
        for path, first, end in self._taken:
            depth = len(path)
            if len(frontier) <= depth or frontier[:depth] != path:
                continue
            position = frontier[depth]
            if first <= position < end:
                # A position still in the parked chunk is not taken up yet.
                return not (lead is not None and lead.path == path and position >= lead.seq + i)
        return False

    def start_waited_for(self) -> bool:
        """In a stuck stage, start the parked call beyond the limit if the release
        waits for it (see _window); return whether the stage went on.

        The expansions holding the slots come later in the order, so they could
        never free one for it without going past their memory bound. Finished
        values the parked lead carries are passed on at once: that needs no slot.
        """
        parked = self._parked
        if parked is None or self._stop.called:
            return False
        chunk, i, carry = parked
        if chunk is None:
            chunk, i = self._read_nowait(), 0
        if chunk is not None and self._window.waits_for(path := (*chunk.path, chunk.seq + i)):
            self._beyond = path
            if chunk is not parked[0]:
                self._took(chunk)
        elif carry:  # a worker passes them on, then parks the lead again
            if chunk is not None and chunk is not parked[0]:
                self._backlog.appendleft(chunk)
            chunk, i = parked[0], parked[1]
        else:
            if chunk is not None and chunk is not parked[0]:
                self._backlog.appendleft(chunk)
            return False
        self._parked = None
        assert self._tg is not None
        self._tg.start_soon(guarded, self._work, (chunk, i, carry))
        return True

    def _read_nowait(self) -> Chunk | None:
        """The next input chunk if one is there, as the lead reads it, else None."""
        if self._backlog:
            return self._backlog.popleft()
        try:
            chunk = self._receive.receive_nowait()
        except (WouldBlock, EndOfStream):
            return None
        self.items_received += len(chunk.entries)
        return self._explode(chunk) if chunk.many else chunk

    async def _expand_here(self, chunk: Chunk, i: int, expansion: Expansion) -> None:
        """Stream the expansion of position ``i`` from this task, holding a slot."""
        if not self._expands:  # from now on the stage may get stuck (see _took)
            self._expands = True
            self._took(chunk)
        slots = self._slots
        slots.take()
        try:
            path = (*chunk.path, chunk.seq + i)
            await stream_expansion(
                expansion,
                path,
                self._send,
                self._window,
                self.caller,
                self._chunk_size,
                self,
                self._run_slots,
            )
        finally:
            slots.give_back()

    async def _left_chunk(self, chunk: Chunk, first: int, i: int) -> None:
        """Position ``i`` leaves ``chunk`` (it expanded): pass on what is before it."""
        if i > first:
            await self._pass_on(self._piece(chunk, first, i))
        if i + 1 == len(chunk.entries):
            tail = self._tail(chunk)
            if tail is not None:
                await self._pass_on(tail)

    # -- running calls ------------------------------------------------------

    async def _lead(self, chunk: Chunk | None, i: int, carry: tuple[Chunk, ...]) -> bool:
        """Lead from position ``i`` of ``chunk`` on.

        ``carry`` holds finished chunks the previous leader could not send.
        Returns False when the input is exhausted (idle workers are then told
        to stop), or True after handing the lead on and finishing the call
        that suspended, with no parked lead left to take up.
        """
        # A worker that takes the lead has just resumed: if the run's scope was
        # cancelled from outside, the cancellation may not have reached it yet.
        await self._if_cancelled()
        for finished in carry:
            await self._pass_on(finished)
        ops = 0
        while True:
            if chunk is None and self._backlog:
                chunk, i = self._backlog.popleft(), 0
                self._took(chunk)
            elif chunk is None:
                try:
                    chunk = self._receive.receive_nowait()
                except WouldBlock:
                    try:
                        chunk = await self._receive.receive()
                    except EndOfStream:
                        self._end_idle_workers()
                        return False
                    await self._if_cancelled()  # (as above: it waited)
                except EndOfStream:
                    self._end_idle_workers()
                    return False
                self.items_received += len(chunk.entries)
                if chunk.many:
                    chunk = self._explode(chunk)
                self._took(chunk)
                i = 0
                ops += 1
                if ops == CHECKPOINT_EVERY:
                    ops = 0
                    await checkpoint()
            stop = await self._through(chunk, i)
            if stop is None:
                chunk = None
                continue
            if stop is _PARKED:
                return True
            first, i, outcome = stop
            self._lead_on(chunk, first, i)
            if type(outcome) is not Expansion:
                # Finish the call that suspended, here (in line: every frame between
                # the task and the call costs on each of its steps). Nothing may
                # checkpoint before it is awaited.
                slots, run_slots = self._slots, self._run_slots
                slots.take()
                if run_slots is not None:
                    run_slots.take()
                try:
                    outcome = await outcome
                finally:
                    slots.give_back()
                    if run_slots is not None:
                        run_slots.give_back()
            if type(outcome) is Expansion:  # (no checkpoint since: nobody took the slot)
                await self._expand_here(chunk, i, outcome)
            else:
                alone = self._joined(chunk, i, outcome)
                if alone is not None:
                    await self._pass_on(alone)
            # That call is over. While calls finish one after another, the lead
            # is parked for the first of them: take it up here, as _work would.
            lead = self._lead_after_call()
            if lead is None:
                return True
            chunk, i, carry = lead
            await self._if_cancelled()  # (as above: it waited)
            for finished in carry:
                await self._pass_on(finished)

    async def _through(self, chunk: Chunk, i: int) -> Any:
        """Run the calls of ``chunk`` from position ``i`` on, passing on what finishes.

        Returns None when the chunk is done, ``_PARKED`` when every slot is
        taken (the lead is parked), or ``(first, i, outcome)`` when the call
        of position ``i`` suspended or expanded (``outcome``: a
        :class:`Pending` or an :class:`Expansion`; ``entries[first:i]`` are
        done and not yet sent).

        Long on purpose: its loops run once per value, and every helper call
        there would cost a measurable share of a cheap stage's throughput
        (see the module docstring); each branch says what it handles.
        """
        caller = self.caller
        start, call, resume = caller.start, caller.plain_call, caller.resume
        base, copy_context, run = caller.context, Context.copy, Context.run
        fresh = base.copy
        shared = self._spare_context  # (see _first_steps)
        coroutine_function = caller.coroutine_function
        kinds_get = _kinds.get
        slots, run_slots, window = self._slots, self._run_slots, self._window
        chunk_size = self._chunk_size
        entries = chunk.entries
        count = len(entries)
        many = chunk.many
        started = clock()
        slice_from = i  # the position at ``started``
        deadline = started + TIME_SLICE
        countdown = 1  # calls until the next look at the clock
        plain_results = True  # every call so far returned a plain value at once
        first = i  # entries[first:i] are done, unsent
        outcome: Any = None  # the call of position i that suspended or expanded
        while i < count:
            if self._stop.called:  # the run is stopping: start no call
                await self._stop.wait_for_cancellation()
            # Slots only free up while we await, so one check per await is enough.
            if slots.used >= slots.limit or (
                run_slots is not None and run_slots.used >= run_slots.limit
            ):
                if i > first:
                    await self._pass_on(self._piece(chunk, first, i))
                    first = i
                if slots.used < slots.limit:
                    # The run's max_parallelism is what is full: wait for any stage.
                    assert run_slots is not None
                    await run_slots.wait_until_free()
                    await self._if_cancelled()  # (as in _pass_on)
                elif self._beyond != (*chunk.path, chunk.seq + i):
                    # Park the lead: the next call of this stage to finish takes
                    # it up at once, without a task switch.
                    self._parked = (chunk, i, ())
                    if self.waiting and window.hungry:
                        self.unstick()
                    return _PARKED
                else:
                    self._beyond = None  # the release waits for it (see start_waited_for)
            if call is not None:
                end = min(count, first + chunk_size)
                if self._map_ok and not many:
                    # The hottest loop: a function that has shown itself sync and
                    # quick runs under map(), in blocks between looks at the clock.
                    while i < end:
                        block_end = min(end, i + self._map_block)
                        # Each call in a fresh copy of the run's context, all in C.
                        contexts = map(copy_context, repeat(base, block_end - i))
                        done: list[Any] = []
                        try:
                            done.extend(map(run, contexts, repeat(call), entries[i:block_end]))
                        except Exception as exc:
                            caller.calls_started += len(done) + 1
                            caller.calls_finished += len(done)
                            raise caller.failed(exc, entries[i + len(done)])  # noqa: B904
                        caller.calls_started += block_end - i  # (see Caller.resume)
                        # Plain results (the usual case: one type, a scalar one) are
                        # told by a count of types, cheaper than a set of them.
                        result_types = list(map(type, done))
                        if kinds_get(result_types[0]) == SCALAR and result_types.count(
                            result_types[0]
                        ) == len(result_types):
                            caller.calls_finished += block_end - i
                            entries[i:block_end] = done
                        else:
                            for result_type in set(result_types):
                                if kinds_get(result_type) != SCALAR:
                                    first = await self._settle_block(chunk, first, i, done)
                                    break
                            else:
                                caller.calls_finished += block_end - i
                                entries[i:block_end] = done
                        i = block_end
                        now = clock()
                        if now >= deadline:
                            countdown = 0
                            break
                        spent = now - started
                        if spent > MAP_BLOCK_S * (i - first) or not self._map_ok:
                            self._map_ok = False  # calls got slow: one by one again
                            self._map_block = MAP_BLOCK
                            break
                        self._map_block = (
                            2 * MAP_BLOCK if 2 * spent < MAP_BLOCK_S * (i - first) else MAP_BLOCK
                        )
                if coroutine_function and not many:
                    # Async functions: the first steps of many calls run inside one
                    # context, entered once (see _first_steps); a call that changes
                    # it leaves it to itself, and the next calls get a fresh copy.
                    plain_results = False
                    while i < end and countdown:
                        before = i
                        i, event, value = shared.run(
                            _first_steps, call, entries, i, min(end, i + countdown), base, shared
                        )
                        countdown -= i - before
                        # Calls are counted in bulk (see Caller.resume).
                        caller.calls_started += i - before + (event is not None)
                        caller.calls_finished += i - before
                        if event is _SUSPENDED:
                            coro, yielded = value
                            outcome = caller.suspended(coro, yielded, entries[i], shared)
                            self._spare_context = shared = fresh()
                            break
                        if event is _FAILED:
                            self._spare_context = fresh()
                            raise caller.failed(value, entries[i])
                        if event is _OWN:  # a finished call that kept its context
                            own, shared = shared, fresh()
                            self._spare_context = shared
                            if kinds_get(type(value)) != SCALAR:
                                value = resume(value, entries[i], own)
                                value_type = type(value)
                                if value_type is Expansion or value_type is Pending:
                                    outcome = value
                                    break
                                if value_type is Many:
                                    self._made_many = True
                            caller.calls_finished += 1
                            entries[i] = value
                            i += 1
                            countdown -= 1
                        if countdown <= 0:
                            now = clock()
                            if now >= deadline:
                                countdown = 0
                                break
                            # Look at the clock rarely while calls are quick, often
                            # when they are slow.
                            if (now - started) * FIRST_STEPS_RUN <= FIRST_STEPS_S * (
                                i - slice_from
                            ):
                                countdown = FIRST_STEPS_RUN
                            else:
                                countdown = 1 if now - started > CHECK_EVERY_S else CHECK_EVERY
                else:
                    # The hot loop: plain entries, a plain function, no awaits.
                    hot_from = i  # calls are counted in bulk (see Caller.resume)
                    try:
                        while i < end and countdown:
                            entry = entries[i]
                            if many and type(entry) is Many:
                                break
                            context = fresh()  # each call in its own context, as a task
                            try:
                                # (making an async function's coroutine runs none of its code)
                                result = (
                                    call(entry) if coroutine_function else context.run(call, entry)
                                )
                                if type(result) is CoroutineType:
                                    # Run it here until it finishes or really waits.
                                    plain_results = False
                                    try:
                                        yielded = context.run(result.send, None)
                                    except StopIteration as stop:
                                        result = stop.value
                                    else:
                                        outcome = caller.suspended(result, yielded, entry, context)
                                        break
                            except Exception as exc:
                                caller.calls_started += 1  # (this call, unfinished)
                                raise caller.failed(exc, entry)  # noqa: B904
                            if kinds_get(type(result)) != SCALAR:
                                plain_results = False
                                try:
                                    result = resume(result, entry, context)
                                except Exception:
                                    caller.calls_started += 1  # (as above)
                                    raise
                                result_type = type(result)
                                if result_type is Expansion:
                                    source = result.source
                                    if (
                                        type(source) is not list
                                        or len(source) > EXPANSION_ALLOWANCE
                                    ):
                                        outcome = result
                                        break
                                    # A list within the allowance: pass it on whole, as a node.
                                    await self._left_chunk(chunk, first, i)
                                    path = (*chunk.path, chunk.seq + i)
                                    weight = 1 if len(path) == 1 else 0
                                    await self._pass_on(
                                        Chunk(0, list(source), weight, False, path, True)
                                    )
                                    i += 1
                                    first = i
                                    continue
                                if result_type is Pending:
                                    outcome = result
                                    break
                                if result_type is Many:
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
                    finally:
                        # Positions passed are calls that finished; one that
                        # suspended or expanded is started and ends later.
                        caller.calls_started += i - hot_from + (outcome is not None)
                        caller.calls_finished += i - hot_from
                if (
                    outcome is None
                    and plain_results
                    and not self._map_ok
                    and i - first >= CHECK_EVERY
                    and clock() - started < MAP_BLOCK_S * (i - first)
                ):
                    # Quick calls with plain results all along: map() them from now on.
                    self._plain_blocks += 1
                    self._map_ok = self._plain_blocks >= MAP_AFTER_BLOCKS
                if outcome is not None or i == count:
                    break
                if i - first >= chunk_size:  # a full chunk: pass it on
                    await self._pass_on(self._piece(chunk, first, i))
                    first = i
                    continue
                if not countdown:
                    # Slow calls: pass on what is done and let others run.
                    if i > first:
                        await self._pass_on(self._piece(chunk, first, i))
                        first = i
                    await checkpoint()
                    await self._if_cancelled()  # (as in _pass_on)
                    started = clock()
                    slice_from = i
                    deadline = started + TIME_SLICE
                    countdown = 1
                    continue
            # One by one: calls with a policy, and dropped values (they keep their place).
            entry = entries[i]
            if many and type(entry) is Many:  # a dropped value (see _explode)
                i += 1
                continue
            result = start(entry)
            result_type = type(result)
            if result_type is Pending or result_type is Expansion:
                outcome = result
                break
            if result_type is Many:
                self._made_many = True
            entries[i] = result
            i += 1
            if i - first >= chunk_size:
                await self._pass_on(self._piece(chunk, first, i))
                first = i
        if outcome is not None:
            return first, i, outcome
        if count > first or not count:  # (an empty chunk is a tail: pass it on)
            await self._pass_on(self._piece(chunk, first, count))
        return None

    async def _settle_block(self, chunk: Chunk, first: int, start: int, done: list[Any]) -> int:
        """Write a map() block whose results were not all plain values; return ``first``.

        A result to await or to expand means the function was not the sync,
        plain one it seemed: it is finished here, by the leader (this once),
        and map() is given up for the run.
        """
        caller = self.caller
        resume = caller.resume
        entries = chunk.entries
        for offset, result in enumerate(done):
            position = start + offset
            if _kinds.get(type(result)) != SCALAR:
                # A coroutine or generator returned by a sync call has run none
                # of its code yet: a fresh copy of the run's context suits it.
                result = resume(result, entries[position], caller.context.copy())
                if type(result) is Pending:
                    self._map_ok = False
                    result = await result  # (counts its call's end)
                elif type(result) is not Expansion:
                    caller.calls_finished += 1
                if type(result) is Expansion:  # (counts its call's end)
                    self._map_ok = False
                    await self._left_chunk(chunk, first, position)
                    first = position + 1
                    await self._expand_here(chunk, position, result)
                    continue
                if type(result) is Many:
                    self._made_many = True
            else:
                caller.calls_finished += 1
            entries[position] = result
        return first

    def _lead_after_call(self) -> _Lead | None:
        """A call of this worker is over: the parked lead, if it may take it up."""
        lead = self._take_parked()
        if lead is None and self.waiting and self._window.hungry:
            # A slot came free while the consumer waits: the stage may be
            # stuck only now (see _window), and nothing else may look.
            self.unstick()
        return lead

    def _lead_on(self, chunk: Chunk, first: int, i: int) -> None:
        """Position ``i`` suspended or expanded: park the lead for another worker.

        ``entries[first:i]`` are done: they go with the lead, to be sent first.
        """
        if i == first and i + 1 < len(chunk.entries):  # (the usual case: nothing to carry)
            self._pass_lead((chunk, i + 1, ()))
            return
        carry: list[Chunk] = []
        if i > first:
            carry.append(self._piece(chunk, first, i))
        if i + 1 < len(chunk.entries):
            self._pass_lead((chunk, i + 1, tuple(carry)))
        else:
            tail = self._tail(chunk)
            if tail is not None:
                carry.append(tail)
            self._pass_lead((None, 0, tuple(carry)))

    def _joined(self, chunk: Chunk, i: int, entry: Any) -> Chunk | None:
        """Position ``i`` of ``chunk`` finished as ``entry``: the chunk to send for it.

        Calls that finish in the same scheduler pass mostly sit side by side
        (in order, or reversed: trio runs half of its passes backwards). When
        the last chunk this stage sent is still in the buffer and ends just
        before this entry, or starts just after it, the entry joins it (up to
        ``chunk_size`` entries) and None is returned: the next stage then takes
        one chunk for the lot.
        """
        last, seq = self._last_single, chunk.seq + i
        buffer = self._out_buffer
        if (
            last is not None
            and buffer
            and buffer[-1] is last
            and last.path == chunk.path
            and len(last.entries) < self._chunk_size
            and (seq == last.seq + len(last.entries) or seq + 1 == last.seq)
        ):
            if seq + 1 == last.seq:
                last.entries.insert(0, entry)
                last.seq = seq
            else:
                last.entries.append(entry)
            if not chunk.path:
                last.weight += 1
            if type(entry) is Many:
                last.many = True
            return None
        weight = 0 if chunk.path else 1
        last = Chunk(seq, [entry], weight, type(entry) is Many, chunk.path)
        self._last_single = last
        return last
