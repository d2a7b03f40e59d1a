"""The stage runner of a single task: many calls at once, up to a limit.

One task at a time is the stage's *leader*: it takes chunks from the stage's
input and starts calls one after another. A call that finishes without
suspending (a sync function, or a cheap coroutine) costs no task switch; its
envelope joins the leader's output chunk. When a call really suspends, the
leader hands the rest of its work (and its output chunk) to a new leader
task and stays behind to finish that call alone. So cheap calls are batched
for free and calls that await never wait for each other; the number of tasks
is bounded by the number of calls suspended at once, i.e. the stage's limit.

An input item that expanded into several values upstream is called once per
value; a :class:`_Join` puts the results back together in their order
(ordered mode) or passes each on as it finishes (as-completed mode).
"""

from __future__ import annotations

from typing import Any

import anyio
from anyio import EndOfStream
from anyio.abc import TaskGroup
from anyio.lowlevel import checkpoint
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._calls import Caller
from ._channels import CHECKPOINT_EVERY, receive, send
from ._envelope import Chunk, Envelope
from ._window import Slots

__all__ = ["SingleStage"]


class _Join:
    """The calls of one envelope whose item expanded into several values."""

    __slots__ = ("env", "left", "parts")

    def __init__(self, env: Envelope) -> None:
        self.env = env
        self.left = len(env.values)
        self.parts: list[list[Any] | None] = [None] * self.left

    def done(self, index: int, items: list[Any], ordered: bool) -> Chunk:
        """Record call ``index``'s outputs; return the envelopes ready to go on."""
        self.left -= 1
        env = self.env
        if not ordered:
            # Each piece goes on at once; the last one carries the window token.
            if self.left == 0:
                env.values = items
                return [env]
            return [Envelope(env.seq, items, 0)] if items else []
        self.parts[index] = items
        if self.left:
            return []
        env.values = [item for part in self.parts if part for item in part]
        return [env]


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
    ) -> None:
        self.caller = caller
        self._receive = receive
        self._send = send
        self._slots = Slots(limit)
        self._run_slots = run_slots
        self._ordered = ordered
        self._tg: TaskGroup | None = None

    async def run(self) -> None:
        """Process every input envelope; close the output once all calls are done."""
        with self._send:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                await self._lead([], 0, 0, None, [])

    async def _wait_for_slot(self) -> None:
        slots, run_slots = self._slots, self._run_slots
        while True:
            if slots.full():
                await slots.wait_until_free()
            elif run_slots is not None and run_slots.full():
                await run_slots.wait_until_free()
            else:
                return

    async def _lead(
        self, chunk: Chunk, i: int, j: int, join: _Join | None, out: Chunk
    ) -> None:
        """Lead from position (``i``, ``j``) of ``chunk`` until a call suspends.

        ``i`` indexes envelopes of ``chunk``, ``j`` the values of envelope ``i``
        (non-zero only inside an expanded envelope, whose ``join`` is given).
        ``out`` holds finished envelopes not yet sent on.
        """
        start = self.caller.start
        slots, run_slots, ordered = self._slots, self._run_slots, self._ordered
        ops = 0
        while True:
            if i == len(chunk):
                if out:
                    await send(self._send, out)
                    out = []
                try:
                    chunk = await receive(self._receive)
                except EndOfStream:
                    return
                i = j = 0
                ops += 1
                if ops == CHECKPOINT_EVERY:
                    ops = 0
                    await checkpoint()
                continue
            env = chunk[i]
            values = env.values
            count = len(values)
            if count == 0:  # dropped upstream: the envelope still goes on, for order
                out.append(env)
                i += 1
                continue
            if slots.full() or (run_slots is not None and run_slots.full()):
                if out:
                    await send(self._send, out)
                    out = []
                await self._wait_for_slot()
            if count == 1:
                outcome = start(values[0])
                i += 1
                if type(outcome) is list:
                    env.values = outcome
                    out.append(env)
                    continue
            else:
                if join is None:
                    join = _Join(env)
                index = j
                outcome = start(values[j])
                j += 1
                current = join
                if j == count:
                    i, j, join = i + 1, 0, None
                if type(outcome) is list:
                    out.extend(current.done(index, outcome, ordered))
                    continue
            # The call suspended: a new leader takes the rest of the work (and
            # the finished envelopes), and this task waits for its one call.
            assert self._tg is not None
            self._tg.start_soon(self._lead, chunk, i, j, join, out)
            slots.take()
            if run_slots is not None:
                run_slots.take()
            try:
                items = await outcome  # type: ignore[misc]
            finally:
                slots.give_back()
                if run_slots is not None:
                    run_slots.give_back()
            if count == 1:
                env.values = items
                await send(self._send, [env])
            else:
                done = current.done(index, items, ordered)
                if done:
                    await send(self._send, done)
            return
