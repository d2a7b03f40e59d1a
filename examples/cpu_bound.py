"""A CPU-bound stage on every core: the worked example of docs/scaling.md.

Run it with ``python examples/cpu_bound.py [process|pool|dask]``. The stage
``checksum`` is pure Python (about 2 ms an item); ``label`` is cheap and runs
on the event loop. Only the decorator's ``executor=`` changes where
``checksum`` runs.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import anyio

from conveyor import SingleTask, single_task


def checksum(n: int) -> int:
    """Pure-Python work (no C call that releases the GIL): about 2 ms."""
    total = n
    for i in range(8000):
        total = (total * 31 + i) % 1000003
    return total


# The headline case: a task at the top of a __main__ script, in anyio's
# worker processes (one per CPU, started on first use, shut down by anyio).
checksum_in_processes = single_task(executor="process")(checksum)


@single_task
def label(value: int) -> str:  # cheap: stays inline
    return f"<{value}>"


async def main(where: str = "process") -> None:
    if where == "process":
        stage: SingleTask[int, int] = checksum_in_processes
        await run(stage)
    elif where == "pool":
        # Your own pool: conveyor uses it and never shuts it down.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(2, mp_context=context) as pool:
            await run(single_task(executor=pool)(checksum))
    else:
        from dask.distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=2, processes=True, dashboard_address=":0")
        with cluster, Client(cluster) as client:
            await run(single_task(executor=client.get_executor())(checksum))


async def run(stage: SingleTask[int, int]) -> None:
    started = time.perf_counter()
    results = await (stage | label)(range(500)).collect()
    assert results == [f"<{checksum(n)}>" for n in range(500)]
    print(f"{len(results)} items in order in {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    anyio.run(main, *sys.argv[1:])
