"""The source feeder: reads the input lazily and numbers it.

It admits items only while the window has room, so a stalled consumer stops
the source from being read. Items that are ready at once (a list, a sync
iterator, an async generator that does not suspend) travel together in one
chunk, under the stages' time-slice rule: after ``TIME_SLICE`` of reading
without a pause the feeder passes on what it has read and lets other tasks
run, so a slow blocking source (one reading every few milliseconds) still
streams, its first item reaching the stages after about one reading. The
feeder looks at the clock after every reading while readings are slow, and
every ``CHECK_EVERY`` readings while they are quick (as the stages do).

The input is closed when the run ends, early or not, so its ``finally``
blocks run.

How the input ends is recorded in the run's :class:`Intake`:

- an exception raised by the input is an end of input that failed: the items
  read before it go on and are released as usual, then the consumer gets the
  exception (with a note saying it came from the input);
- :meth:`Intake.stop` (``stop_reading()``) ends the input early, and the run
  then ends normally once every item read so far is released.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from itertools import islice
from time import perf_counter as clock
from typing import Any

import anyio
from anyio.lowlevel import checkpoint
from anyio.streams.memory import MemoryObjectSendStream

from ._channels import CHECKPOINT_EVERY, send
from ._eager import Pending, drive
from ._envelope import Chunk
from ._notes import add_note
from ._single import CHECK_EVERY, TIME_SLICE
from ._spec import DEFAULT_CHUNK
from ._stop import interrupted, stopping
from ._threaded import ThreadedReader
from ._window import Window

__all__ = ["Intake", "feed"]

#: Quick readings: a reading that takes less than this (seconds) on average.
_QUICK = TIME_SLICE / CHECK_EVERY


class Intake:
    """What the consumer's side of a run knows of its input, and can do to it.

    ``error`` is the exception the input raised, to be raised once everything
    read before it is released (``raised`` keeps it once taken).
    :meth:`stop` makes the feeder stop reading; ``exhausted`` says the input
    was read to its end (so a late stop cut nothing short).
    """

    __slots__ = ("_scope", "error", "exhausted", "raised", "stopped")

    def __init__(self) -> None:
        self.error: Exception | None = None
        self.raised: Exception | None = None
        self.stopped = False
        self.exhausted = False
        self._scope: anyio.CancelScope | None = None  # the feeder's reading, while it runs

    def stop(self) -> None:
        """Read no more input: the feeder leaves any wait for the input or for room."""
        self.stopped = True
        if self._scope is not None:
            self._scope.cancel()

    def take_error(self) -> Exception | None:
        """The input's exception, once (None after that, or if there was none)."""
        error, self.error = self.error, None
        if error is not None:
            self.raised = error
        return error

    @property
    def cut_short(self) -> bool:
        """Whether :meth:`stop` ended the input before its end."""
        return self.stopped and not self.exhausted


async def feed(
    source: Iterator[Any] | AsyncIterator[Any],
    out: MemoryObjectSendStream[Chunk],
    window: Window,
    chunk_size: int = DEFAULT_CHUNK,
    intake: Intake | None = None,
    what: str = "the input",
) -> None:
    """Send every item of ``source`` into ``out`` in chunks of up to ``chunk_size``.

    ``out`` is closed only when the input ended (exhausted, failed, or
    stopped by ``intake``): if the run fails, the next stage must not take
    the missing rest for a normal end (the run closes every stream once all
    its workers are gone). ``what`` names the input in notes.
    """
    if intake is None:
        intake = Intake()
    feeder = _Feeder(out, window, chunk_size, intake)
    try:
        # Intake.stop() cancels this scope. Inside it the feeder awaits only
        # for room, for the input and at its checkpoints, always after passing
        # on what it has read; its sends never wait (the window admits no more
        # items than the channel holds), so a stop loses no item that was read.
        with anyio.CancelScope() as scope:
            intake._scope = scope
            if intake.stopped:
                scope.cancel()
            if isinstance(source, Iterator):
                await feeder.read_sync(source)
            else:
                await feeder.read_async(source)
        intake._scope = None
        if intake.stopped and isinstance(source, ThreadedReader):
            # Read already, in the thread: they go on too.
            await feeder.pass_on_beyond_the_window(source.take_buffered())
    except Exception as exc:
        if (intake.stopped or stopping()) and interrupted(exc):
            # A stop interrupted the input (an async generator, at an await)
            # and its cleanup raised: an error of its closing.
            add_note(exc, f"conveyor: raised by {what} while it was being closed")
            if stopping():  # the run is stopping: the error goes with it
                raise
        else:  # the input failed: an end of input, after everything read before it
            add_note(exc, f"conveyor: raised by {what} after {feeder.seq} item(s) were read")
        intake.error = exc
    finally:
        await _close(source, what)
    out.close()


async def _close(source: Iterator[Any] | AsyncIterator[Any], what: str) -> None:
    """Close the input (its ``finally`` blocks run), noting what it raises."""
    try:
        if isinstance(source, Iterator):
            close = getattr(source, "close", None)
            if close is not None:
                close()
        else:
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()
    except Exception as exc:
        add_note(exc, f"conveyor: raised by {what} while it was being closed")
        raise


class _Feeder:
    """Reads one input into one run; ``seq`` numbers the next item."""

    __slots__ = ("chunk_size", "intake", "out", "seq", "window")

    def __init__(
        self,
        out: MemoryObjectSendStream[Chunk],
        window: Window,
        chunk_size: int,
        intake: Intake,
    ) -> None:
        self.out = out
        self.window = window
        self.chunk_size = chunk_size
        self.intake = intake
        self.seq = 0

    def pass_on(self, items: list[Any]) -> None:
        """Admit ``items`` and send them to the first stage, without waiting.

        The window admits no more items than the channel holds chunks, so
        there is always room: the feeder never waits while it holds a reading
        of the input that is under way (an async source's step, driven by
        hand, must be awaited in the same cancel scopes it was started in).
        """
        if items:
            self.window.admit(len(items))
            self.out.send_nowait(Chunk(self.seq, items, len(items)))
            self.seq += len(items)

    async def pass_on_beyond_the_window(self, items: list[Any]) -> None:
        """Admit and send ``items`` even if the window is full (waiting for the channel)."""
        if items:
            self.window.admit(len(items))
            await send(self.out, Chunk(self.seq, items, len(items)))
            self.seq += len(items)

    async def room(self) -> int:
        """How many items may be read now, after waiting for some; 0 once stopped."""
        window = self.window
        await window.wait_for_room()
        return 0 if self.intake.stopped else min(window.free(), self.chunk_size)

    async def read_sync(self, source: Iterator[Any]) -> None:
        ops = 0
        while room := await self.room():
            items: list[Any] = []
            started = clock()
            step = 1  # readings until the next look at the clock
            sliced = False
            while True:
                want = min(step, room - len(items))
                before = len(items)
                try:
                    items.extend(islice(source, want))
                except Exception:
                    self.pass_on(items)  # what was read before the error goes on
                    raise
                if len(items) - before < want:  # exhausted
                    self.pass_on(items)
                    self.intake.exhausted = True
                    return
                if len(items) == room:
                    break
                now = clock()
                if now - started >= TIME_SLICE:
                    sliced = True
                    break
                step = CHECK_EVERY if now - started < _QUICK * len(items) else 1
            self.pass_on(items)
            ops += 1
            if sliced or ops == CHECKPOINT_EVERY:
                ops = 0
                await checkpoint()

    async def read_async(self, source: AsyncIterator[Any]) -> None:
        ops = 0
        anext = type(source).__anext__
        while room := await self.room():
            items: list[Any] = []
            started = clock()
            sliced = False
            try:
                while room:
                    step: Any = anext(source)
                    item: Any
                    if hasattr(step, "send"):  # a coroutine or an async generator's step
                        item = drive(step)
                        waits = type(item) is Pending
                    else:
                        item, waits = step, True
                    if waits:
                        # The source really waits: pass on what is ready first.
                        self.pass_on(items)
                        items = []
                        item = await item
                        started = clock()
                    items.append(item)
                    room -= 1
                    if len(items) % CHECK_EVERY == 0 and clock() - started >= TIME_SLICE:
                        sliced = True
                        break
            except StopAsyncIteration:
                self.pass_on(items)
                self.intake.exhausted = True
                return
            except Exception:
                self.pass_on(items)  # what was read before the error goes on
                raise
            self.pass_on(items)
            ops += 1
            if sliced or ops == CHECKPOINT_EVERY:
                ops = 0
                await checkpoint()
