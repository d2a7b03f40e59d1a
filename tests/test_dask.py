"""A stage on a real Dask cluster: ``executor=client.get_executor()``.

One ``LocalCluster(n_workers=2, processes=True)`` serves the whole module.
What docs/scaling.md promises for Dask: results in order (or as completed),
batches, each error policy with the remote traceback, cancellation of queued
round trips, and flat client memory on a long input.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import anyio
import distributed  # the test extra installs conveyor[dask]: never skipped
import pytest

from conveyor import BatchTask, ErrorHandler, SingleTask

from . import executor_functions as fn

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    with cluster, distributed.Client(cluster) as dask_client:
        yield dask_client


@pytest.fixture
def executor(client: Any) -> Any:
    return client.get_executor()


@pytest.mark.parametrize("mode", ["ordered", "as_completed"])
async def test_a_stage_maps_items_on_the_cluster(executor: Any, mode: str) -> None:
    task = SingleTask(fn.where, executor=executor).with_execution_mode(mode)  # type: ignore[arg-type]
    results = await task(range(200)).collect()
    items = [x for x, _ in results]
    assert items == list(range(200)) if mode == "ordered" else sorted(items) == list(range(200))
    assert os.getpid() not in {pid for _, pid in results}


@pytest.mark.parametrize("mode", ["ordered", "as_completed"])
async def test_a_batch_stage_runs_on_the_cluster(executor: Any, mode: str) -> None:
    pipeline = (
        SingleTask(fn.square.func, executor=executor) | BatchTask(fn.total, max_size=10)
    ).with_execution_mode(mode)  # type: ignore[arg-type]
    remote_batches = BatchTask(fn.halves, max_size=4, executor=executor)
    sums = await pipeline(range(100)).collect()
    assert sum(sums) == sum(x * x for x in range(100))
    if mode == "ordered":
        assert sums == [sum(x * x for x in range(i, i + 10)) for i in range(0, 100, 10)]
    assert await remote_batches(range(10)).collect() == [x // 2 for x in range(10)]


async def test_a_remote_failure_fails_the_run_with_its_type(executor: Any) -> None:
    with pytest.raises(fn.Odd, match="odd: 1") as caught:
        await SingleTask(fn.fail_on_odd, executor=executor)([0, 1, 2]).collect()
    assert "in fail_on_odd" in str(caught.value.__cause__)


async def test_skip_item_skips_a_remote_failure_with_its_traceback(executor: Any) -> None:
    task = SingleTask(fn.fail_on_odd, executor=executor, on_error="skip_item")
    async with task.open(range(6)) as stream:
        assert [x async for x in stream] == [0, 2, 4]
    assert sorted(f.item for f in stream.failures) == [1, 3, 5]
    assert all("fail_on_odd" in (f.remote_traceback or "") for f in stream.failures)


async def test_skip_batch_skips_a_failed_remote_batch(executor: Any) -> None:
    task = BatchTask(fn.fail_on_odd_batch, max_size=2, executor=executor, on_error="skip_batch")
    async with task.open([0, 2, 1, 4]) as stream:
        assert [x async for x in stream] == [2]
    [failure] = stream.failures
    assert type(failure.exception) is fn.Odd
    assert failure.item == [1, 4]


async def test_an_error_handler_replaces_a_remote_failure(executor: Any) -> None:
    class Zero(ErrorHandler):
        async def handle_error(
            self, error: Exception, item: Any, task_name: str, attempt: int
        ) -> tuple[bool, Any]:
            return True, 0

    task = SingleTask(fn.fail_on_odd, executor=executor, error_handler=Zero())
    assert await task(range(4)).collect() == [0, 0, 2, 0]


async def test_a_stop_cancels_queued_round_trips_on_the_cluster(client: Any) -> None:
    go = distributed.Event("conveyor-go", client=client)
    go.clear()
    executor = client.get_executor()
    task = SingleTask(fn.wait_for_dask_event, executor=executor, concurrency_limit=40, chunk_size=1)
    try:
        with anyio.move_on_after(60) as scope:
            async with task.open(range(1000)) as stream:
                while stream.statistics().stages[0].calls_waiting < 40:
                    await anyio.sleep(0.01)
                scope.cancel()
        assert scope.cancelled_caught
        assert len(stream.failures) == 0
        # The two running calls may finish; the 38 queued ones are cancelled.
        with anyio.fail_after(30):
            while len(client.futures) > 2:
                await anyio.sleep(0.05)
    finally:
        go.set()


async def test_ten_thousand_items_keep_client_memory_flat(client: Any) -> None:
    task = SingleTask(fn.identity, executor=client.get_executor())
    most = 0
    count = 0
    async for value in task(range(10_000)):
        assert value == count
        count += 1
        most = max(most, len(client.futures))
    assert count == 10_000
    # Two round trips per worker are in flight; the client releases finished
    # futures a moment later, so a few linger. Never anything like 10,000.
    assert most <= 4 * 2 * 2


async def test_a_worker_plugin_loads_state_once_per_worker(client: Any) -> None:
    from conveyor.integrations.dask import worker_state_plugin

    client.register_plugin(worker_state_plugin("model", fn.load_dask_model), name="model")
    task = SingleTask(fn.predict_with_dask_state, executor=client.get_executor(), chunk_size=5)
    results = await task(range(40)).collect()
    assert [x for x, _, _ in results] == list(range(40))
    assert {loads for _, _, loads in results} == {1}


def test_without_distributed_the_dask_integration_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from conveyor.integrations import dask as integration

    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError, match=r"pip install 'conveyor\[dask\]'"):
        integration.worker_state_plugin("model", fn.load_dask_model)
