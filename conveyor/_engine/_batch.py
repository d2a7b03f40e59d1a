"""The stage runner of a batch task.

It gathers values in arrival order (in input order, behind a reorder step,
in ordered mode) and calls the function with ``max_size`` of them at a time,
one batch call at a time. At the end of the input a remainder of at least
``min_size`` values is processed; a smaller one is not, and a warning says so.

A batch stage ends one window segment and starts the next: gathering an
envelope gives its token back upstream, and each batch's output is admitted
downstream as one envelope numbered by batch.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from anyio import EndOfStream
from anyio.lowlevel import checkpoint
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..statistics import StageStatistics
from ._calls import Caller
from ._channels import CHECKPOINT_EVERY, receive, send
from ._eager import Pending
from ._envelope import Chunk, Many, add_values
from ._reorder import Reorder
from ._window import Slots, Window

if TYPE_CHECKING:
    from ._offload import OffloadCalls

__all__ = ["BatchStage"]

logger = logging.getLogger("conveyor")


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
    ) -> None:
        self.caller = caller
        self._receive = receive
        self._send = send
        self._min_size = min_size
        self._max_size = max_size
        self._upstream = upstream
        self._downstream = downstream
        self._run_slots = run_slots
        self._reorder = Reorder() if ordered else None
        self._seq = 0
        self._calling = 0
        self.items_received = 0

    def statistics(self) -> StageStatistics:
        """A snapshot of this stage."""
        return StageStatistics(
            name=self.caller.name,
            kind="batch",
            items_received=self.items_received,
            calls_waiting=self._calling,
            concurrency_limit=1,
            input_buffered=self._receive.statistics().current_buffer_used,
        )

    async def run(self) -> None:
        """Batch every input value; close the output after the last batch."""
        pending: list[Any] = []
        max_size = self._max_size
        ops = 0
        while True:
            try:
                chunk = await receive(self._receive)
            except EndOfStream:
                break
            self.items_received += len(chunk.entries)
            due = self._reorder.push(chunk) if self._reorder is not None else (chunk,)
            for chunk in due:
                add_values(pending, chunk)
                self._upstream.give_back(chunk.weight)
                while len(pending) >= max_size:
                    batch = pending[:max_size]
                    del pending[:max_size]
                    await self._call(batch)
            ops += 1
            if ops == CHECKPOINT_EVERY:
                ops = 0
                await checkpoint()
        if len(pending) >= self._min_size:
            await self._call(pending)
        elif pending:
            logger.warning(
                "conveyor: batch task %r dropped the last %d item(s): fewer than "
                "min_size=%d were left at the end of the input",
                self.caller.name,
                len(pending),
                self._min_size,
            )
        self._send.close()  # only on a normal end, as in SingleStage.run

    async def _call(self, batch: list[Any]) -> None:
        run_slots = self._run_slots
        if run_slots is not None:
            await run_slots.wait_until_free()
            run_slots.take()
        self._calling = 1
        try:
            entry = self.caller.start(batch)
            if type(entry) is Pending:
                entry = await entry
        finally:
            self._calling = 0
            if run_slots is not None:
                run_slots.give_back()
        downstream = self._downstream
        await downstream.wait_for_room()
        downstream.admit(1)
        await send(self._send, Chunk(self._seq, [entry], 1, type(entry) is Many))
        self._seq += 1
