"""Streaming one call's expansion: its values leave as they are made.

When a call returns a list of several values, a generator or an async
generator, the stage's worker that made the call streams the values on as
the children of the call's position (see ``_envelope``): each value needs room *before* it
is made (so a generator is advanced only while
its values drain, and a stalled consumer stops it: see ``_window``), values
that are ready together travel in one chunk, and a chunk is passed on as soon as the
generator would wait, is full, or has run for a time slice. The node ends
with a closing chunk.

Failures part-way follow the rules in ``docs/errors.md``: values already
made are passed on and stay passed on; the call is retried only while it has
made no value; after that the policy decides (skip keeps what was passed on, an
error handler's replacement is appended after it). The generator is closed
on every way out, so its ``finally`` runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextvars import Context
from time import perf_counter as clock
from typing import Any, Protocol

import anyio
import anyio.to_thread
from anyio import WouldBlock
from anyio.lowlevel import checkpoint
from anyio.streams.memory import MemoryObjectSendStream

from ._calls import Caller
from ._eager import InContext, Pending, drive
from ._envelope import EMPTY, Chunk
from ._outputs import Expansion
from ._stop import interrupted, stopping
from ._window import EXPANSION_ALLOWANCE, Slots, Window

__all__ = ["TIME_SLICE", "Stuck", "stream_expansion"]

#: Seconds a generator may run on before what it made is passed on.
TIME_SLICE = 0.002
#: The most values one hop of a thread generator asks for (see _pump_thread).
MAX_HOP = 128


async def stream_expansion(
    expansion: Expansion,
    path: tuple[int, ...],
    out: MemoryObjectSendStream[Chunk],
    window: Window,
    caller: Caller,
    chunk_size: int,
    stage: Stuck | None = None,
    run_slots: Slots | None = None,
) -> None:
    """Pass every value of ``expansion`` on as a child of node ``path``, then close it.

    ``stage`` is the single stage whose slot the call holds (see
    ``Window.starving``). ``run_slots`` is the run's ``max_parallelism``: the
    call holds one of them while it runs, not while it waits for its values
    to be taken (else a run capped at one call could never take them).
    Raises what the task's policy does not absorb (the run then fails).
    """
    pieces = _Pieces(path, out, window, chunk_size, stage, run_slots)
    window.expansions[path] = pieces
    try:
        while True:
            source, context = expansion.source, expansion.context
            try:
                await _pump(source, pieces, caller, context)
            except Exception as exc:
                if stopping() and interrupted(exc):
                    # The run's stop interrupted the generator and its cleanup
                    # raised: a close's error, for the run, never for the policy.
                    caller.expansion_cancelled(expansion, exc)
                    raise caller.failed_closing(exc, expansion.value)  # noqa: B904 - itself
                # What it made before failing is passed on: a call that made a
                # value is never retried (no value is made twice), whatever the
                # timing of the pieces.
                await pieces.flush()
                outcome = await caller.expansion_failed(exc, expansion, pieces.passed_on)
                if type(outcome) is Expansion:
                    expansion = outcome  # a retry, or a replacement that expands
                    continue
                if outcome is not EMPTY:
                    await pieces.room()
                    pieces.buffer.append(outcome)
            except BaseException as exc:  # the run's stop, or a fatal error
                caller.expansion_cancelled(expansion, exc)
                raise
            finally:
                await _close(source, caller, context, expansion.value)
            break
        await pieces.close()
        caller.expansion_finished(expansion, pieces.paused)
    finally:
        pieces.pause()
        del window.expansions[path]


class Stuck(Protocol):
    """What an expansion needs of the stage whose slot it holds."""

    #: Expansions of the stage waiting for their values to drain.
    waiting: list[_Pieces]

    def must_go_on(self) -> bool:
        """True when the stage is stuck and its waiting expansions must go past
        their bound (the consumer waits for nothing that is on its way)."""

    def going_on_stuck(self) -> None:
        """Its expansions go on past their allowance (say so, once)."""


class _Pieces:
    """The values of one node, numbered and passed on in chunks.

    ``outstanding`` counts the values passed on and not yet released at the
    segment's end; at most ``EXPANSION_ALLOWANCE`` of them, with what is
    made and not yet passed on.
    """

    __slots__ = (
        "_wake",
        "buffer",
        "chunk_size",
        "out",
        "outstanding",
        "passed_on",
        "path",
        "paused",
        "run_slot",
        "run_slots",
        "stage",
        "waited",
        "window",
    )

    def __init__(
        self,
        path: tuple[int, ...],
        out: MemoryObjectSendStream[Chunk],
        window: Window,
        chunk_size: int,
        stage: Stuck | None,
        run_slots: Slots | None,
    ) -> None:
        self.path = path
        self.run_slots = run_slots
        self.run_slot = False  # holding one of run_slots
        self.out = out
        self.window = window
        self.chunk_size = chunk_size
        self.stage = stage
        self.buffer: list[Any] = []  # made, not yet passed on
        self.passed_on = 0
        self.outstanding = 0
        self.paused = 0.0  # seconds spent waiting for values to drain
        self.waited = False  # the generator waited during the current burst
        self._wake: anyio.Event | None = None

    async def room(self) -> None:
        """Return once the next value may be made (first passing on what is made)."""
        if self.outstanding + len(self.buffer) >= EXPANSION_ALLOWANCE:
            await self._wait_for_room()
        if self.run_slots is not None and not self.run_slot:
            await self.run_slots.wait_until_free()
            self.run_slots.take()
            self.run_slot = True

    def room_left(self) -> int:
        """How many values may be made before the next look at the room (at least 1)."""
        made = self.outstanding + len(self.buffer)
        return max(1, min(self.chunk_size - len(self.buffer), EXPANSION_ALLOWANCE - made))

    def pause(self) -> None:
        """The call stops running for a while: give its run slot back."""
        if self.run_slot:
            self.run_slot = False
            assert self.run_slots is not None
            self.run_slots.give_back()

    async def _wait_for_room(self) -> None:
        await self.flush()
        self.pause()
        stage = self.stage
        while self.outstanding >= EXPANSION_ALLOWANCE:
            wake = self._wake = anyio.Event()
            if stage is not None:
                stage.waiting.append(self)
            try:
                if stage is not None and self.window.hungry and stage.must_go_on():
                    stage.going_on_stuck()
                    return  # see Window: a stuck stage goes on
                began = anyio.current_time()
                await wake.wait()
                self.paused += anyio.current_time() - began
            finally:
                self._wake = None
                if stage is not None:
                    stage.waiting.remove(self)

    def drained(self, count: int) -> None:
        """``count`` values of this node were released at the segment's end."""
        self.outstanding -= count
        if self._wake is not None and self.outstanding <= EXPANSION_ALLOWANCE - self.chunk_size:
            self._wake.set()

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _piece(self) -> Chunk:
        buffer = self.buffer
        self.buffer = []
        chunk = Chunk(self.passed_on, buffer, 0, path=self.path)
        self.passed_on += len(buffer)
        self.outstanding += len(buffer)
        return chunk

    async def _send(self, chunk: Chunk) -> None:
        try:
            self.out.send_nowait(chunk)
        except WouldBlock:
            self.pause()  # waiting for the next stage to take it: not running
            began = anyio.current_time()
            await self.out.send(chunk)
            self.paused += anyio.current_time() - began

    async def flush(self) -> None:
        """Pass on what is made, waiting for room in the channel if need be."""
        if self.buffer:
            await self._send(self._piece())

    def flush_nowait(self) -> None:
        """Pass on what is made if the channel has room now (the call is mid-step)."""
        if self.buffer:
            chunk = Chunk(self.passed_on, self.buffer, 0, path=self.path)
            try:
                self.out.send_nowait(chunk)
            except WouldBlock:
                return  # passed on with the next piece
            self._piece()

    async def close(self) -> None:
        """Pass on the rest, and end the node (with an input item's token, at the top)."""
        buffer = self.buffer
        self.buffer = []
        weight = 1 if len(self.path) == 1 else 0
        chunk = Chunk(self.passed_on, buffer, weight, path=self.path, end=True)
        self.passed_on += len(buffer)
        self.outstanding += len(buffer)
        await self._send(chunk)


async def _pump(source: Any, pieces: _Pieces, caller: Caller, context: Context) -> None:
    """Move every value of ``source`` into ``pieces``; generators run in ``context``."""
    if type(source) is list:
        await _pump_sync(iter(source), pieces, context)
    elif isinstance(source, Iterator):
        if caller.thread_limiter is not None:
            await _pump_thread(source, pieces, caller, context)
        else:
            await _pump_sync(source, pieces, context)
    else:
        await _pump_async(source, pieces, caller.timeout, context)


async def _pump_sync(source: Iterator[Any], pieces: _Pieces, context: Context) -> None:
    # Values are made in bursts (see _sync_burst): per value, only the
    # generator's own step and a list append.
    while True:
        await pieces.room()
        if context.run(_sync_burst, source, pieces, pieces.room_left()):
            return
        await pieces.flush()
        await checkpoint()


def _sync_burst(source: Iterator[Any], pieces: _Pieces, most: int) -> bool:
    """Make up to ``most`` values, for at most a time slice; True once ``source`` ended."""
    buffer = pieces.buffer
    deadline = clock() + TIME_SLICE
    for value in source:  # (leaving the loop early does not close the generator)
        buffer.append(value)
        most -= 1
        if not most or clock() >= deadline:
            return False
    return True


async def _pump_async(
    source: AsyncIterator[Any],
    pieces: _Pieces,
    timeout: float | None,  # noqa: ASYNC109
    context: Context,
) -> None:
    if timeout is not None:
        await _pump_async_with_deadlines(source, pieces, timeout, context)
        return
    while True:
        await pieces.room()
        pieces.waited = False
        burst = drive(_async_burst(source, pieces, pieces.room_left()), context)
        if type(burst) is Pending:
            # The generator really waits: pass on what it made first (without
            # waiting: a suspended step must be awaited before anything else),
            # and end the burst at its next value, so that it passes on too.
            pieces.flush_nowait()
            pieces.waited = True
            burst = await burst
        if burst:
            return
        await pieces.flush()
        await checkpoint()


async def _async_burst(source: AsyncIterator[Any], pieces: _Pieces, most: int) -> bool:
    """Make up to ``most`` values, for at most a time slice; True once ``source`` ended.

    Driven by hand (see ``_eager``), so that what is made before the generator
    first waits can be passed on before it waits; values go to ``pieces.buffer``
    as it is at each step (it is replaced when passed on).
    """
    deadline = clock() + TIME_SLICE
    async for value in source:  # (leaving the loop early does not close the generator)
        pieces.buffer.append(value)
        most -= 1
        if not most or pieces.waited or clock() >= deadline:
            return False
    return True


async def _pump_async_with_deadlines(
    source: AsyncIterator[Any],
    pieces: _Pieces,
    timeout: float,  # noqa: ASYNC109
    context: Context,
) -> None:
    """One value at a time, each wait for it bounded by ``timeout`` seconds."""
    anext = type(source).__anext__
    while True:
        await pieces.room()
        step: Any = anext(source)
        # The deadline's scope must be entered before the step starts (trio's
        # cancel scopes nest), so no eager first step here.
        pieces.flush_nowait()
        try:
            with anyio.fail_after(timeout):
                value = await (InContext(step, context) if hasattr(step, "send") else step)
        except StopAsyncIteration:
            return
        pieces.buffer.append(value)
        if len(pieces.buffer) >= pieces.chunk_size:
            await pieces.flush()


async def _pump_thread(
    source: Iterator[Any], pieces: _Pieces, caller: Caller, context: Context
) -> None:
    """A sync generator that runs in a worker thread, a few values per hop.

    Each hop asks for at most as many values as there is room for, so the
    generator is advanced only while its values drain. A hop's values wait
    for the last of them, so hops start at one value and grow only while
    they are quick (see ``_next_hop``). What the generator made before it
    raised is passed on before the error goes to the policy; a value that
    came later than ``timeout`` seconds after the one before it is dropped and
    the attempt fails with ``TimeoutError`` (the thread cannot be interrupted
    in the generator, so the late wait is noticed when it ends).
    """
    limiter = caller.thread_limiter
    timeout = caller.timeout
    hop = 1
    while True:
        await pieces.room()
        most = min(hop, pieces.chunk_size, EXPANSION_ALLOWANCE - pieces.outstanding)
        values, ended, error, seconds = await anyio.to_thread.run_sync(
            context.run, _pull, source, most, timeout, limiter=limiter
        )
        pieces.buffer.extend(values)
        await pieces.flush()
        if error is not None:
            raise error
        if ended:
            return
        hop = _next_hop(hop, len(values) == most, seconds)


def _next_hop(hop: int, full: bool, seconds: float) -> int:
    """How many values the next hop asks for: four times more after a full,
    quick hop (under an eighth of a time slice), fewer after a slow one."""
    if full and seconds < TIME_SLICE / 8:
        return min(hop * 4, MAX_HOP)
    if seconds > TIME_SLICE / 2:
        return max(1, hop // 4)
    return hop


def _pull(
    source: Iterator[Any],
    most: int,
    timeout: float | None,
) -> tuple[list[Any], bool, Exception | None, float]:
    """In a worker thread: up to ``most`` values, for at most a time slice.

    Returns the values, whether the generator ended, what it raised (or a
    ``TimeoutError`` for a value later than ``timeout``), and the seconds taken.
    """
    values: list[Any] = []
    started = last = clock()
    deadline = started + TIME_SLICE
    try:
        for value in source:
            now = clock()
            if timeout is not None and now - last > timeout:
                late = TimeoutError(f"no value within {timeout} s (the late one is dropped)")
                return values, False, late, now - started
            values.append(value)
            last = now
            if len(values) >= most or now >= deadline:
                return values, False, None, now - started
    except Exception as exc:
        return values, True, exc, clock() - started
    return values, True, None, clock() - started


async def _close(source: Any, caller: Caller, context: Context, value: Any) -> None:
    """Close a generator on every way out, so that its ``finally`` runs (in ``context``).

    What its ``finally`` raises is noted as raised while it was being closed
    (once), and raised: it reaches the program like any error of the run.
    """
    if type(source) is list:
        return
    try:
        await _close_now(source, caller, context)
    except Exception as exc:
        raise caller.failed_closing(exc, value)  # noqa: B904 - the same exception


async def _close_now(source: Any, caller: Caller, context: Context) -> None:
    with anyio.CancelScope(shield=True):
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await InContext(aclose(), context)
            return
        close = getattr(source, "close", None)
        if close is None:
            return
        if caller.thread_limiter is not None:
            await anyio.to_thread.run_sync(context.run, close, limiter=caller.thread_limiter)
        else:
            context.run(close)
