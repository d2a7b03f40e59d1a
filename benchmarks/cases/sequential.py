"""The floor: a plain sequential `await` loop, one item at a time, no library.

All-single-stage plans run as `for x in data: x = await f(x) ...`; a plan
with a batch stage fills a list of `max_size` items and calls the batch
function on it; an expanding stage is `async for y in f(x)`. No concurrency
at all, so fan-out (N x 50 ms = 100 s at full N) is not run, and there is no
as-completed order to measure on the timeline.

    python benchmarks/cases/sequential.py --workload overhead --n 2000
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

try:
    from . import workload as wl
except ImportError:  # run as a script
    import workload as wl  # type: ignore[no-redef]


async def _items(source: Any) -> AsyncIterator[Any]:
    if hasattr(source, "__aiter__"):
        async for x in source:
            yield x
    else:
        for x in source:
            yield x


async def _single(stage: wl.Stage, items: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for x in items:
        if stage.expands:
            async for y in stage.fn(x):
                yield y
        else:
            yield await stage.fn(x) if stage.is_async else stage.fn(x)


async def _batch(stage: wl.Stage, items: AsyncIterator[Any]) -> AsyncIterator[Any]:
    batch: list[Any] = []

    async def call() -> list[Any]:
        return await stage.fn(batch) if stage.is_async else stage.fn(batch)

    async for x in items:
        batch.append(x)
        if len(batch) == stage.max_size:
            for y in await call():
                yield y
            batch = []
    if batch and len(batch) >= stage.min_size:
        for y in await call():
            yield y


async def run(stages: list[wl.Stage], source: Any) -> AsyncIterator[Any]:
    if all(s.kind == "single" and not s.expands for s in stages):
        calls = [(s.fn, s.is_async) for s in stages]
        async for x in _items(source):
            for fn, is_async in calls:
                x = await fn(x) if is_async else fn(x)
            yield x
        return
    items = _items(source)
    for s in stages:
        items = _batch(s, items) if s.kind == "batch" else _single(s, items)
    async for x in items:
        yield x


class Sequential:
    name = "sequential"
    module = None

    def unsupported(self, workload: str, mode: str, backend: str) -> str | None:
        if workload == "fanout":
            return "not run: one call at a time takes N x 50 ms (100 s at the full N=2,000)"
        if workload == "timeline" and mode == "as_completed":
            return "a sequential loop has no completion order of its own"
        return None

    def check_library(self) -> str | None:
        return None

    def build(self, plan: wl.Plan) -> list[wl.Stage]:
        return plan.stages

    def open(self, stages: list[wl.Stage], source: Any, mode: str) -> Any:
        return wl.iterate(run(stages, source))


if __name__ == "__main__":
    raise SystemExit(wl.main("sequential", lambda args: Sequential()))
