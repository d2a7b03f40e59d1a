"""Channel operations with a fast path.

anyio's ``send()`` and ``receive()`` always checkpoint, which costs a
scheduler round trip even when the operation could complete at once. These
helpers try the ``*_nowait`` twin first and only wait when they must; the
loops that use them call :func:`anyio.lowlevel.checkpoint` every
``CHECKPOINT_EVERY`` operations so that cancellation and other tasks still
get their turn.
"""

from __future__ import annotations

from collections import deque
from typing import Any, TypeVar

from anyio import WouldBlock
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = ["CHECKPOINT_EVERY", "receive", "send", "sent_buffer"]

T = TypeVar("T")

#: Channel operations a loop may complete without yielding to the scheduler.
CHECKPOINT_EVERY = 16


async def send(stream: MemoryObjectSendStream[T], item: T) -> None:
    """``await stream.send(item)``, without a checkpoint when there is room."""
    try:
        stream.send_nowait(item)
    except WouldBlock:
        await stream.send(item)


async def receive(stream: MemoryObjectReceiveStream[T]) -> T:
    """``await stream.receive()``, without a checkpoint when an item is ready.

    Raises :class:`anyio.EndOfStream` once the stream is closed and drained.
    """
    try:
        return stream.receive_nowait()
    except WouldBlock:
        return await stream.receive()


def sent_buffer(stream: MemoryObjectSendStream[Any]) -> deque[Any]:
    """The items sent on ``stream`` and not yet received, oldest first.

    anyio keeps them in a deque that it only appends to (sends) and pops
    from the left (receives), so its last item, while there, is the last one
    sent and still unread: a sender may still add to it in place. This is
    anyio's private state (``_state.buffer``, unchanged since anyio 3); if a
    release changes it, an empty deque of our own is returned, which only
    turns that saving off.
    """
    buffer = getattr(getattr(stream, "_state", None), "buffer", None)
    return buffer if type(buffer) is deque else deque()
