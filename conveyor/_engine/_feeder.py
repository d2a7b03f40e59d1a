"""The source feeder: reads the input lazily and numbers it.

It admits items only while the window has room, so a stalled consumer stops
the source from being read. Items that are ready at once (a list, a sync
iterator, an async generator that does not suspend) travel together in one
chunk. An async iterator the feeder reads is closed when the run ends, early
or not, so its ``finally`` blocks run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from itertools import islice
from typing import Any

import anyio
from anyio.lowlevel import checkpoint
from anyio.streams.memory import MemoryObjectSendStream

from ._channels import CHECKPOINT_EVERY, send
from ._eager import Pending, drive
from ._envelope import Chunk
from ._spec import DEFAULT_CHUNK
from ._window import Window

__all__ = ["feed"]


async def feed(
    source: Iterator[Any] | AsyncIterator[Any],
    out: MemoryObjectSendStream[Chunk],
    window: Window,
    chunk_size: int = DEFAULT_CHUNK,
) -> None:
    """Send every item of ``source`` into ``out`` in chunks of up to ``chunk_size``.

    ``out`` is closed only when the source is exhausted: if the run fails,
    the next stage must not take the missing rest for a normal end (the run
    closes every stream once all its workers are gone).
    """
    if isinstance(source, Iterator):
        try:
            await _feed_sync(source, out, window, chunk_size)
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()
    else:
        try:
            await _feed_async(source, out, window, chunk_size)
        finally:
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()
    out.close()


async def _feed_sync(
    source: Iterator[Any], out: MemoryObjectSendStream[Chunk], window: Window, chunk_size: int
) -> None:
    seq = 0
    ops = 0
    while True:
        await window.wait_for_room()
        room = min(window.free(), chunk_size)
        items = list(islice(source, room))
        if items:
            window.admit(len(items))
            await send(out, Chunk(seq, items, len(items)))
            seq += len(items)
        if len(items) < room:
            return
        ops += 1
        if ops == CHECKPOINT_EVERY:
            ops = 0
            await checkpoint()


async def _feed_async(
    source: AsyncIterator[Any], out: MemoryObjectSendStream[Chunk], window: Window, chunk_size: int
) -> None:
    seq = 0
    ops = 0
    anext = type(source).__anext__
    while True:
        await window.wait_for_room()
        room = min(window.free(), chunk_size)
        items: list[Any] = []
        while room:
            try:
                step: Any = anext(source)
                item: Any
                if hasattr(step, "send"):  # a coroutine or an async generator's step
                    item = drive(step)
                    waits = type(item) is Pending
                else:
                    item, waits = step, True
                if waits:
                    # The source really waits: pass on what is ready first.
                    if items:
                        window.admit(len(items))
                        await send(out, Chunk(seq, items, len(items)))
                        seq += len(items)
                        items = []
                    item = await item
            except StopAsyncIteration:
                if items:
                    window.admit(len(items))
                    await send(out, Chunk(seq, items, len(items)))
                return
            items.append(item)
            room -= 1
        window.admit(len(items))
        await send(out, Chunk(seq, items, len(items)))
        seq += len(items)
        ops += 1
        if ops == CHECKPOINT_EVERY:
            ops = 0
            await checkpoint()
