"""The plain anyio pipeline a user writes by hand, without a library.

One task group; a fixed pool of worker tasks per stage; memory object streams
(bounded buffers) between stages; every item travels as `(seq, value)` and, in
ordered mode, the consumer side restores input order with a reorder dict. A
batch stage is one task that fills a list up to `max_size` (the remainder is
flushed at the end) and sends each element on under its own sequence number.
Flow control as a user writes it by hand: several flushes at once under a
semaphore (batch concurrency), a receive under `move_on_after` (max_wait), and
calls paced one at a time by `sleep_until` under a lock (a rate limit).
An expanding stage (an async generator function) is one task that numbers the
values it yields afresh: fed in input order (it must be the first stage), it
makes them in input order too. Runs on asyncio (also uvloop) and trio.

    python benchmarks/cases/handwritten_anyio.py --workload overhead --backend trio --n 2000
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

try:
    import anyio
except ModuleNotFoundError:  # reported as "n/a" when the adapter is made
    anyio = None  # type: ignore[assignment]

try:
    from . import workload as wl
except ImportError:  # run as a script
    import workload as wl  # type: ignore[no-redef]

if TYPE_CHECKING:
    from anyio.abc import TaskGroup
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    Recv = MemoryObjectReceiveStream[tuple[int, Any]]
    Send = MemoryObjectSendStream[tuple[int, Any]]


async def _feed(source: Any, send: Send) -> None:
    async with send:
        if hasattr(source, "__aiter__"):
            seq = 0
            async for x in source:
                await send.send((seq, x))
                seq += 1
        else:
            for seq, x in enumerate(source):
                await send.send((seq, x))


class _Pacer:
    """A rate limit by hand: one call at a time through a lock, `1 / rate` apart."""

    def __init__(self, rate: float) -> None:
        self.interval = 1 / rate
        self.next_slot = -float("inf")
        self.lock = anyio.Lock()

    async def wait(self) -> None:
        async with self.lock:
            await anyio.sleep_until(self.next_slot)
            self.next_slot = max(self.next_slot, anyio.current_time()) + self.interval


async def _worker(stage: wl.Stage, recv: Recv, send: Send, pacer: _Pacer | None = None) -> None:
    fn = stage.fn
    async with recv, send:
        if pacer is not None:
            async for seq, x in recv:
                await pacer.wait()
                await send.send((seq, await fn(x)))
            return
        if stage.is_async:
            async for seq, x in recv:
                await send.send((seq, await fn(x)))
        else:
            async for seq, x in recv:
                await send.send((seq, fn(x)))


async def _batcher(stage: wl.Stage, recv: Recv, send: Send) -> None:
    if stage.concurrency or stage.max_wait is not None:
        await _flow_batcher(stage, recv, send)
        return

    async def flush(seqs: list[int], xs: list[Any]) -> None:
        ys = await stage.fn(xs) if stage.is_async else stage.fn(xs)
        for seq, y in zip(seqs, ys, strict=True):
            await send.send((seq, y))

    async with recv, send:
        seqs: list[int] = []
        xs: list[Any] = []
        async for seq, x in recv:
            seqs.append(seq)
            xs.append(x)
            if len(xs) == stage.max_size:
                await flush(seqs, xs)
                seqs, xs = [], []
        if xs and len(xs) >= stage.min_size:
            await flush(seqs, xs)


async def _expander(stage: wl.Stage, recv: Recv, send: Send) -> None:
    async with recv, send:
        seq = 0
        async for _, x in recv:
            async for y in stage.fn(x):
                await send.send((seq, y))
                seq += 1


async def _flow_batcher(stage: wl.Stage, recv: Recv, send: Send) -> None:
    """Up to `concurrency` flushes at once; a batch is also flushed `max_wait` after
    its first item arrived."""
    slots = anyio.Semaphore(stage.concurrency or 1)

    async def flush(seqs: list[int], xs: list[Any]) -> None:
        try:
            ys = await stage.fn(xs) if stage.is_async else stage.fn(xs)
        finally:
            slots.release()
        for seq, y in zip(seqs, ys, strict=True):
            await send.send((seq, y))

    async with recv, send, anyio.create_task_group() as tg:
        seqs: list[int] = []
        xs: list[Any] = []
        deadline = float("inf")
        while True:
            got = None
            with anyio.move_on_after(deadline - anyio.current_time() if xs else float("inf")):
                try:
                    got = await recv.receive()
                except anyio.EndOfStream:
                    break
            if got is not None:
                if not xs and stage.max_wait is not None:
                    deadline = anyio.current_time() + stage.max_wait
                seqs.append(got[0])
                xs.append(got[1])
            if len(xs) == stage.max_size or (got is None and xs):
                await slots.acquire()
                tg.start_soon(flush, seqs, xs)
                seqs, xs = [], []
        if xs and len(xs) >= stage.min_size:
            await slots.acquire()
            tg.start_soon(flush, seqs, xs)


def _start_stage(tg: TaskGroup, stage: wl.Stage, recv: Recv, workers: int) -> Recv:
    send, out = anyio.create_memory_object_stream[tuple[int, Any]](workers)
    if stage.kind == "batch":
        tg.start_soon(_batcher, stage, recv, send)
        return out
    if stage.expands:
        tg.start_soon(_expander, stage, recv, send)
        return out
    pacer = _Pacer(stage.rate) if stage.rate is not None else None
    with recv, send:  # the clones keep the streams open; the last one closes them
        for _ in range(stage.concurrency or workers):
            tg.start_soon(_worker, stage, recv.clone(), send.clone(), pacer)
    return out


async def _in_order(recv: Recv) -> AsyncIterator[Any]:
    pending: dict[int, Any] = {}  # {seq: value} arrived ahead of `next_seq`
    next_seq = 0
    async for seq, y in recv:
        pending[seq] = y
        while next_seq in pending:
            yield pending.pop(next_seq)
            next_seq += 1


async def _as_completed(recv: Recv) -> AsyncIterator[Any]:
    async for _, y in recv:
        yield y


@asynccontextmanager
async def open_pipeline(
    source: Any, stages: list[wl.Stage], *, ordered: bool = True, workers: int = 100
) -> AsyncIterator[AsyncIterator[Any]]:
    async with anyio.create_task_group() as tg:
        send, recv = anyio.create_memory_object_stream[tuple[int, Any]](workers)
        tg.start_soon(_feed, source, send)
        if any(s.expands for s in stages[1:]):
            raise ValueError("the hand-written pipeline expands in its first stage only")
        for stage in stages:
            recv = _start_stage(tg, stage, recv, workers)
        with recv:
            try:
                yield _in_order(recv) if ordered else _as_completed(recv)
            finally:
                tg.cancel_scope.cancel()


class HandwrittenAnyio:
    name = "handwritten"
    module = "anyio"
    features = ("batch_concurrency", "max_wait", "rate_limit")

    def __init__(self, workers: int) -> None:
        if anyio is None:
            import anyio as _  # noqa: F401  (raises ModuleNotFoundError: "n/a")
        self.workers = workers

    def unsupported(self, workload: str, mode: str, backend: str) -> str | None:
        return None

    def check_library(self) -> str | None:
        return None

    def build(self, plan: wl.Plan) -> list[wl.Stage]:
        return plan.stages

    def open(self, stages: list[wl.Stage], source: Any, mode: str) -> Any:
        return open_pipeline(source, stages, ordered=mode == "ordered", workers=self.workers)


if __name__ == "__main__":
    raise SystemExit(wl.main("handwritten", lambda args: HandwrittenAnyio(args.workers)))
