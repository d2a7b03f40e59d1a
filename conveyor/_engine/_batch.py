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
from typing import Any

from anyio import EndOfStream, WouldBlock
from anyio.lowlevel import checkpoint
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..statistics import StageStatistics
from ._calls import Caller
from ._channels import CHECKPOINT_EVERY, send
from ._eager import Pending
from ._envelope import Chunk, Many, add_values
from ._expand import stream_expansion
from ._outputs import Expansion
from ._reorder import Reorder
from ._spec import DEFAULT_CHUNK
from ._stop import Stop
from ._window import Slots, Window

__all__ = ["BatchStage"]

logger = logging.getLogger("conveyor")


class BatchStage:
    """Runs one batch task's calls for one run."""

    def __init__(
        self,
        caller: Caller,
        *,
        receive: MemoryObjectReceiveStream[Chunk],
        send: MemoryObjectSendStream[Chunk],
        min_size: int,
        max_size: int,
        upstream: Window,
        downstream: Window,
        run_slots: Slots | None,
        ordered: bool,
        stop: Stop,
    ) -> None:
        self.caller = caller
        self._stop = stop
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
        try:
            await self._batch_all()
        except BaseException:
            self._stop.set()  # a failure or a cancellation: the run is stopping
            raise

    async def _batch_all(self) -> None:
        pending: list[Any] = []
        max_size = self._max_size
        ops = 0
        while True:
            try:
                try:
                    chunk = self._receive.receive_nowait()
                except WouldBlock:
                    self._upstream.starving()
                    try:
                        chunk = await self._receive.receive()
                    finally:
                        self._upstream.hungry = False
            except EndOfStream:
                break
            self.items_received += len(chunk.entries)
            due = self._reorder.push(chunk) if self._reorder is not None else (chunk,)
            for chunk in due:
                add_values(pending, chunk)
                self._upstream.release((chunk,))
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
        if self._stop.called:  # the run is stopping: start no call
            await self._stop.wait_for_cancellation()
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
        seq = self._seq
        self._seq += 1
        if type(entry) is Expansion:  # its values stream on as they are made
            await stream_expansion(
                entry, (seq,), self._send, downstream, self.caller, DEFAULT_CHUNK, None, run_slots
            )
        else:
            await send(self._send, Chunk(seq, [entry], 1, type(entry) is Many))
