"""conveyor-streaming 1.2.1 from PyPI, the asyncio-only package conveyor replaces.

It imports as `conveyor` too, so it lives in its own virtualenv
(`benchmarks/.venvs/conveyor-streaming`, made by `benchmarks/setup_peers.py`).
Its public API is conveyor's, so the adapter is conveyor's own; only the
import check and the backends differ. Input lists are passed as lists (1.2.1
treats any other sync iterable, a `range` say, as one item).

An async source (the memory workload) cannot go through `pipeline(agen)` in
1.2.1: `Pipeline.__call__` takes a non-`Iterable` argument for a side input
of the first stage (and keeps it on the stage for later runs), so the items
never flow. The adapter then chains the stages with the public low-level
`await task.process(items)` instead, and says so in the result's `note`.

    benchmarks/.venvs/conveyor-streaming/bin/python \\
        benchmarks/cases/conveyor_streaming_case.py --workload overhead --n 2000
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

try:
    from . import workload as wl
    from .conveyor_case import ConveyorAdapter, _module_from_dist
except ImportError:  # run as a script
    import workload as wl  # type: ignore[no-redef]
    from conveyor_case import ConveyorAdapter, _module_from_dist  # type: ignore[no-redef]

VERSION = "1.2.1"
REPO = Path(__file__).resolve().parents[2]


class ConveyorStreamingAdapter(ConveyorAdapter):
    name = "conveyor-streaming"
    backends = ("asyncio",)
    features = ()  # one batch call at a time, no max_wait, no rate limits

    def __init__(self, variant: str = "default") -> None:
        # `python -m benchmarks.cases...` from the repository puts the project's
        # own `conveyor/` first on sys.path: drop it, we want the installed peer
        sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO]
        super().__init__(variant)

    def check_library(self) -> str | None:
        from importlib import metadata

        if not _module_from_dist(self.lib, "conveyor-streaming"):
            return f"`import conveyor` is not conveyor-streaming here ({self.lib.__file__})"
        version = metadata.version("conveyor-streaming")
        if version != VERSION:
            return f"conveyor-streaming {version} installed, {VERSION} expected"
        return None

    def open(self, pipeline: Any, source: Any, mode: str) -> Any:
        if not hasattr(source, "__aiter__"):
            return super().open(pipeline, source, mode)
        self.note = (
            "async source fed through `await task.process(items)` per stage: "
            "1.2.1's `pipeline(async_gen)` takes it for a side input"
        )
        return self._process_chain(pipeline, source)

    @asynccontextmanager
    async def _process_chain(self, pipeline: Any, source: Any) -> AsyncIterator[Any]:
        stream = source
        for stage in getattr(pipeline, "stages", [pipeline]):
            stream = await stage.process(stream)
        async with wl.iterate(stream) as it:
            yield it


if __name__ == "__main__":
    raise SystemExit(
        wl.main("conveyor-streaming", lambda args: ConveyorStreamingAdapter("default"))
    )
