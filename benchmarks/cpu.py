"""The `cpu` workload: a CPU-bound stage scaled out, measured in one run.

A pure-Python stage (``cases/cpu_work.burn``, about 2 ms an item) followed by
a trivial stage, ordered, over N items (default 2,000), run:

- ``inline``: on the event loop (one core);
- ``process``: ``executor="process"`` (anyio's worker processes);
- ``user pool``: ``executor=ProcessPoolExecutor(W)`` (forkserver);
- ``dask``: ``executor=client.get_executor()`` on ``LocalCluster(n_workers=W)``;
- ``pool.map`` by hand: ``ProcessPoolExecutor.map(burn, items, chunksize=...)``,
  then the trivial stage: the floor to compare with;
- ``pypeln``: ``pl.process.map`` with W workers, in its own venv
  (``benchmarks/.venvs/pypeln``, made by ``setup_peers.py``), if it installs.

The second table is the per-item overhead: the same pipeline with a trivial
function (``cpu_work.trivial``) over M items, in items per second. Pools and
clusters are started (and warmed up) before timing; each cell is the best of
``--repeat`` runs. Results that are wrong fail the script.

    python -m benchmarks.cpu [--n 2000] [--trivial-n 20000] [--workers 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any

import anyio

from benchmarks.cases.cpu_work import burn, tag, trivial
from conveyor import SingleTask

HERE = os.path.dirname(os.path.abspath(__file__))


async def through(func: Callable[[int], int], executor: Any, n: int) -> list[int]:
    stage: SingleTask[int, int] = SingleTask(func, executor=executor)
    return await (stage | SingleTask(tag))(range(n)).collect()


def by_hand(pool: Executor, func: Callable[[int], int], n: int, workers: int) -> list[int]:
    chunksize = max(1, n // (workers * 8))
    return [tag(value) for value in pool.map(func, range(n), chunksize=chunksize)]


async def best(repeat: int, run: Callable[[], Awaitable[list[int]]], expected: list[int]) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        out = await run()
        times.append(time.perf_counter() - started)
        if out != expected:
            raise SystemExit("WRONG results")
    return min(times)


def pypeln_cell(n: int, trivial_n: int, workers: int) -> dict[str, float] | None:
    sys.path.insert(0, HERE)
    from setup_peers import ensure

    python, why = ensure("pypeln", log=lambda *_: None)
    if python is None:
        print(f"pypeln: n/a ({why})", file=sys.stderr)
        return None
    script = os.path.join(HERE, "cases", "pypeln_cpu.py")
    done = subprocess.run(
        [str(python), script, str(n), str(trivial_n), str(workers)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        print(f"pypeln: failed\n{done.stderr}", file=sys.stderr)
        return None
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


async def main(args: argparse.Namespace) -> None:
    n, trivial_n, workers, repeat = args.n, args.trivial_n, args.workers, args.repeat
    expected = [tag(burn(x)) for x in range(n)]
    expected_trivial = [tag(x) for x in range(trivial_n)]
    cpu: dict[str, float] = {}
    per_item: dict[str, float] = {}

    async def measure(name: str, executor: Any) -> None:
        await through(trivial, executor, 100)  # start and warm up the workers
        cpu[name] = await best(repeat, lambda: through(burn, executor, n), expected)
        seconds = await best(
            repeat, lambda: through(trivial, executor, trivial_n), expected_trivial
        )
        per_item[name] = trivial_n / seconds
        print(f"{name}: {cpu[name]:.3f} s, {per_item[name]:,.0f} trivial items/s", flush=True)

    await measure("inline", None)
    await measure('executor="process"', "process")
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        await measure("user ProcessPoolExecutor", pool)
        by_hand(pool, trivial, 100, workers)

        async def hand(func: Callable[[int], int], count: int) -> list[int]:
            return await anyio.to_thread.run_sync(by_hand, pool, func, count, workers)

        cpu["ProcessPoolExecutor.map by hand"] = await best(repeat, lambda: hand(burn, n), expected)
        seconds = await best(repeat, lambda: hand(trivial, trivial_n), expected_trivial)
        per_item["ProcessPoolExecutor.map by hand"] = trivial_n / seconds
    if not args.no_dask:
        from distributed import Client, LocalCluster

        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
        with cluster, Client(cluster) as client:
            await measure(f"Dask LocalCluster({workers})", client.get_executor())
    if not args.no_pypeln:
        result = pypeln_cell(n, trivial_n, workers)
        if result is not None:
            cpu["pypeln pl.process"] = result["cpu_s"]
            per_item["pypeln pl.process"] = result["trivial_items_per_s"]

    floor = cpu["ProcessPoolExecutor.map by hand"]
    print(
        f"\n`cpu` workload: {n} items of ~2 ms pure Python + a trivial stage, ordered, "
        f"{workers} workers, {os.cpu_count()} CPUs (best of {repeat})\n"
    )
    print("| implementation | seconds | vs inline | vs map by hand | trivial items/s |")
    print("|---|---:|---:|---:|---:|")
    for name, seconds in cpu.items():
        print(
            f"| {name} | {seconds:.2f} | {cpu['inline'] / seconds:.2f}x "
            f"| {floor / seconds:.2f}x | {per_item.get(name, 0):,.0f} |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--trivial-n", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-dask", action="store_true")
    parser.add_argument("--no-pypeln", action="store_true")
    anyio.run(main, parser.parse_args())
