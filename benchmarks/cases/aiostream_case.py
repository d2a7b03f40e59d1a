"""aiostream, with its own idioms (asyncio only).

    stream.iterate(data)
      | pipe.map(async_fn, ordered=..., task_limit=N)   # an async stage
      | pipe.map(sync_fn)                                # a sync stage (in order)
      | pipe.concatmap(async_gen_fn, task_limit=N)       # an expanding stage (in order)
      | pipe.chunks(50) | pipe.map(batch_fn, task_limit=1) | pipe.concatmap(stream.iterate)
    async with xs.stream() as results: async for r in results: ...

N is the workload's limit, or `--workers` (100) where it sets none.

    benchmarks/.venvs/aiostream/bin/python \\
        benchmarks/cases/aiostream_case.py --workload overhead --n 2000
"""

from __future__ import annotations

from typing import Any

try:
    from . import workload as wl
except ImportError:  # run as a script
    import workload as wl  # type: ignore[no-redef]


class AiostreamAdapter:
    name = "aiostream"
    module = "aiostream"

    def __init__(self, workers: int) -> None:
        import aiostream

        self.lib = aiostream
        self.workers = workers

    def unsupported(self, workload: str, mode: str, backend: str) -> str | None:
        return None if backend == "asyncio" else "aiostream runs on asyncio only"

    def check_library(self) -> str | None:
        return None

    def build(self, plan: wl.Plan) -> list[wl.Stage]:
        return plan.stages

    def open(self, stages: list[wl.Stage], source: Any, mode: str) -> Any:
        stream, pipe = self.lib.stream, self.lib.pipe
        xs = stream.iterate(source)
        for st in stages:
            if st.kind == "batch":
                xs = (
                    xs
                    | pipe.chunks(st.max_size)
                    | pipe.map(st.fn, task_limit=1)
                    | pipe.concatmap(stream.iterate, task_limit=1)
                )
            elif st.expands:
                limit = st.concurrency or self.workers
                xs = xs | pipe.concatmap(st.fn, task_limit=limit)
            elif st.is_async:
                limit = st.concurrency or self.workers
                xs = xs | pipe.map(st.fn, ordered=mode == "ordered", task_limit=limit)
            else:
                xs = xs | pipe.map(st.fn)  # sync: applied in order, no task_limit
        return xs.stream()


if __name__ == "__main__":
    raise SystemExit(wl.main("aiostream", lambda args: AiostreamAdapter(args.workers)))
