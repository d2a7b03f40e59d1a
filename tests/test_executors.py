"""executor=: calls in threads, in worker processes, in any concurrent.futures.Executor.

What the user guide promises for ``executor=`` (docs/scaling.md): the same
results, output rule, order and error policies as inline calls; the user's
pool is used, never shut down; no thread is held per call in flight; a stop
cancels every queued call; and tasks pickle by reference, also under spawn
and forkserver.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import pytest

from conveyor import (
    BatchTask,
    CallInfo,
    ErrorHandler,
    Failure,
    Instrument,
    RateLimiter,
    SingleTask,
    batch_task,
    executors,
    single_task,
)
from conveyor._engine._calls import CallPolicy
from conveyor._engine._offload import OffloadCalls, _Sizer
from conveyor._engine._stop import Stop
from conveyor.exceptions import RemoteError, RemoteTraceback
from conveyor.executors import offloader_for
from conveyor.statistics import StageStatistics

from . import executor_functions as fn

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent


class Recording:
    """Wraps an executor; remembers every future it handed out."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self.futures: list[Future[Any]] = []

    def submit(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future = self.executor.submit(func, *args, **kwargs)
        self.futures.append(future)
        return future


def recording(executor: Executor) -> Any:
    """``executor``, as a ``concurrent.futures.Executor`` that records its futures."""

    class RecordingExecutor(Executor):
        _max_workers = getattr(executor, "_max_workers", 2)

        def __init__(self) -> None:
            self.record = Recording(executor)

        def submit(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
            return self.record.submit(func, *args, **kwargs)

    return RecordingExecutor()


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessPoolExecutor]:
    """The user's process pool: two spawned workers, shared by this module's tests."""
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as executor:
        yield executor


@pytest.fixture(scope="module")
def threads() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(4, thread_name_prefix="user-pool") as executor:
        yield executor


# -- each kind of executor, single and batch, both modes ---------------------


@pytest.fixture(scope="module")
def loky_pool() -> Any:
    import loky

    return loky.get_reusable_executor(max_workers=2)


KINDS = ["thread", "process", "spawn pool", "thread pool", "loky"]


@pytest.mark.parametrize("mode", ["ordered", "as_completed"])
@pytest.mark.parametrize("kind", KINDS)
async def test_every_executor_kind_runs_single_and_batch_tasks(
    kind: str,
    mode: str,
    pool: ProcessPoolExecutor,
    threads: ThreadPoolExecutor,
    loky_pool: Any,
) -> None:
    executor = {"spawn pool": pool, "thread pool": threads, "loky": loky_pool}.get(kind, kind)
    pipeline = (
        SingleTask(fn.shape, executor=executor)
        | BatchTask(fn.describe_batch, max_size=4, executor=executor)
    ).with_execution_mode(mode)  # type: ignore[arg-type]
    inline = (SingleTask(fn.shape) | BatchTask(fn.describe_batch, max_size=4)).with_execution_mode(
        mode
    )  # type: ignore[arg-type]
    results = await pipeline(range(40)).collect()
    expected = await inline(range(40)).collect()
    if mode == "ordered":
        assert results == expected
    else:
        assert sorted(results, key=repr) == sorted(expected, key=repr)


@pytest.mark.parametrize("mode", ["ordered", "as_completed"])
async def test_process_executor_runs_calls_in_anyio_worker_processes(mode: str) -> None:
    task = SingleTask(fn.where, executor="process")
    results = await task.with_execution_mode(mode)(range(50)).collect()  # type: ignore[arg-type]
    items = [x for x, _ in results]
    assert items == list(range(50)) if mode == "ordered" else sorted(items) == list(range(50))
    assert os.getpid() not in {pid for _, pid in results}


async def test_a_task_decorated_at_top_level_runs_in_processes() -> None:
    assert await fn.square(range(10)).collect() == [x * x for x in range(10)]


@pytest.mark.parametrize("mode", ["ordered", "as_completed"])
async def test_user_process_pool_runs_single_and_batch_tasks(
    pool: ProcessPoolExecutor, mode: str
) -> None:
    single = SingleTask(fn.where, executor=pool)
    batch = BatchTask(fn.total, max_size=10, executor=pool)
    pipeline = (SingleTask(fn.square.func, executor=pool) | batch).with_execution_mode(mode)  # type: ignore[arg-type]
    sums = await pipeline(range(100)).collect()
    assert len(sums) == 10
    assert sum(sums) == sum(x * x for x in range(100))
    if mode == "ordered":
        assert sums == [sum(x * x for x in range(i, i + 10)) for i in range(0, 100, 10)]
    pids = {pid for _, pid in await single.with_execution_mode(mode)(range(20)).collect()}  # type: ignore[arg-type]
    assert os.getpid() not in pids


async def test_output_rule_of_remote_results_matches_inline(pool: ProcessPoolExecutor) -> None:
    inline = await SingleTask(fn.shape)(range(30)).collect()
    remote = await SingleTask(fn.shape, executor=pool)(range(30)).collect()
    assert remote == inline
    assert await BatchTask(fn.halves, max_size=4, executor=pool)(range(10)).collect() == [
        x // 2 for x in range(10)
    ]


async def test_values_of_an_expanded_item_each_get_a_remote_call(
    pool: ProcessPoolExecutor,
) -> None:
    expand = SingleTask(fn.shape)
    inline = await (expand | SingleTask(fn.identity))(range(12)).collect()
    remote = await (expand | SingleTask(fn.identity, executor=pool))(range(12)).collect()
    assert remote == inline


async def test_user_thread_pool_runs_the_calls(threads: ThreadPoolExecutor) -> None:
    results = await SingleTask(fn.thread_name, executor=threads)(range(20)).collect()
    assert [x for x, _ in results] == list(range(20))
    assert all(name.startswith("user-pool") for _, name in results)


async def test_thread_executor_is_run_in_thread() -> None:
    task = SingleTask(fn.thread_name, executor="thread")
    assert task.run_in_thread
    results = await task(range(5)).collect()
    assert threading.current_thread().name not in {name for _, name in results}


async def test_side_inputs_are_shipped_by_value(pool: ProcessPoolExecutor) -> None:
    task = SingleTask(fn.add, executor=pool).with_inputs(10, scale=3)
    assert await task(range(4)).collect() == [30, 33, 36, 39]


async def test_get_current_context_is_none_in_a_worker_process(
    pool: ProcessPoolExecutor,
) -> None:
    task = SingleTask(fn.context_seen, executor=pool).with_context(data={"k": 1})
    assert await task(range(3)).collect() == []  # None drops each item


async def test_the_users_pool_is_never_shut_down(threads: ThreadPoolExecutor) -> None:
    await SingleTask(fn.identity, executor=threads)(range(3)).collect()
    assert threads.submit(fn.identity, 7).result() == 7


# -- tasks pickle by reference ------------------------------------------------

SCRIPT = """
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import anyio

from conveyor import single_task

METHOD = os.environ["START_METHOD"]
executor = (
    "process"
    if METHOD == "anyio"
    else ProcessPoolExecutor(2, mp_context=multiprocessing.get_context(METHOD))
)


@single_task(executor=executor)
def cube(x: int) -> int:
    return x ** 3


async def main() -> None:
    print(await cube(range(5)).collect())


if __name__ == "__main__":
    anyio.run(main)
"""


@pytest.mark.parametrize("method", ["spawn", "forkserver", "anyio"])
def test_a_task_at_the_top_of_a_main_script_runs_in_processes(tmp_path: Path, method: str) -> None:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(SCRIPT))
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "START_METHOD": method},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[0, 1, 8, 27, 64]"


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
async def test_a_top_level_task_pickles_by_reference_under(method: str) -> None:
    context = multiprocessing.get_context(method)
    with ProcessPoolExecutor(1, mp_context=context) as own_pool:
        task = SingleTask(fn.square.func, executor=own_pool)
        assert await task(range(4)).collect() == [0, 1, 4, 9]


# -- definition-time checks ---------------------------------------------------


@pytest.mark.parametrize("executor", ["process", "pool"])
def test_async_def_with_a_process_executor_is_a_type_error(
    executor: str, pool: ProcessPoolExecutor
) -> None:
    async def fetch(x: int) -> int:
        return x

    with pytest.raises(TypeError, match="sync functions only"):
        single_task(executor=pool if executor == "pool" else "process")(fetch)


def test_a_generator_function_with_a_process_executor_is_a_type_error() -> None:
    def explode(x: int) -> Iterator[int]:
        yield x

    with pytest.raises(TypeError, match="cannot stream a generator"):
        single_task(executor="process")(explode)
    with pytest.raises(TypeError, match="cannot stream a generator"):
        batch_task(max_size=2, executor="process")(explode)


def test_a_generator_function_with_a_thread_pool_says_where_generators_stream() -> None:
    def explode(x: int) -> Iterator[int]:
        yield x

    with (
        ThreadPoolExecutor(max_workers=1) as pool,
        pytest.raises(TypeError, match="cannot stream a generator") as caught,
    ):
        single_task(executor=pool)(explode)
    message = str(caught.value)
    assert "process" not in message  # a thread pool has no process boundary
    assert 'executor="thread"' in message
    assert "run_in_thread=True" in message


def test_an_async_batch_function_with_a_process_executor_is_a_type_error() -> None:
    async def store(batch: list[int]) -> None:
        return None

    with pytest.raises(TypeError, match="sync functions only"):
        batch_task(max_size=2, executor="process")(store)


@pytest.mark.parametrize(
    ("value", "error"), [("processes", ValueError), (4, TypeError), (object(), TypeError)]
)
def test_executor_accepts_thread_process_or_an_executor(value: object, error: type) -> None:
    with pytest.raises(error, match="executor must be"):
        single_task(executor=value)  # type: ignore[call-overload]


def test_run_in_thread_and_another_executor_contradict() -> None:
    with pytest.raises(ValueError, match="contradict"):
        SingleTask(fn.identity, run_in_thread=True, executor="process")


async def test_an_offloaded_source_is_refused() -> None:
    task = SingleTask(fn.model, executor="process")
    with pytest.raises(TypeError, match="source"):
        await task().collect()


# -- pickling problems name the task --------------------------------------------


async def test_an_unpicklable_function_names_the_task(pool: ProcessPoolExecutor) -> None:
    local = 3
    task = SingleTask(lambda x: x + local, executor=pool, task_name="plus_local")
    with pytest.raises(TypeError, match="'plus_local' cannot run in ProcessPoolExecutor"):
        await task([1]).collect()


async def test_an_unpicklable_item_fails_its_own_call(pool: ProcessPoolExecutor) -> None:
    task = SingleTask(fn.identity, executor=pool, on_error="skip_item", chunk_size=8)
    async with task.open([1, fn.Unpicklable(), 3]) as stream:
        assert [x async for x in stream] == [1, 3]
    [failure] = task_failures(stream)
    assert isinstance(failure.exception, TypeError)
    assert "task 'identity' cannot send item <Unpicklable>" in str(failure.exception)


async def test_an_unpicklable_result_fails_its_own_call(pool: ProcessPoolExecutor) -> None:
    task = SingleTask(fn.lock_result, executor=pool, on_error="skip_item", chunk_size=8)
    async with task.open(range(4)) as stream:
        assert [x async for x in stream] == [0, 1, 3]
    [failure] = task_failures(stream)
    assert failure.item == 2
    assert "cannot be pickled" in str(failure.exception)


def task_failures(stream: Any) -> list[Failure]:
    failures: list[Failure] = stream.failures
    return failures


# -- errors keep their type and their remote traceback --------------------------


async def test_a_remote_exception_keeps_its_type_and_remote_traceback(
    pool: ProcessPoolExecutor,
) -> None:
    task = SingleTask(fn.fail_on_odd, executor=pool)
    with pytest.raises(fn.Odd, match="odd: 1") as caught:
        await task([0, 1, 2]).collect()
    notes = "\n".join(getattr(caught.value, "__notes__", []))
    cause = caught.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "in fail_on_odd" in cause.text
    assert "conveyor: task 'fail_on_odd' failed in ProcessPoolExecutor on item 1" in notes


async def test_skip_item_records_a_failure_with_the_remote_traceback(
    pool: ProcessPoolExecutor,
) -> None:
    task = SingleTask(fn.fail_on_odd, executor=pool, on_error="skip_item")
    async with task.open(range(6)) as stream:
        assert [x async for x in stream] == [0, 2, 4]
    failures = task_failures(stream)
    assert sorted(f.item for f in failures) == [1, 3, 5]
    assert all(type(f.exception) is fn.Odd for f in failures)
    assert all(f.remote_traceback and "fail_on_odd" in f.remote_traceback for f in failures)


async def test_skip_batch_drops_a_failed_remote_batch(pool: ProcessPoolExecutor) -> None:
    task = BatchTask(fn.fail_on_odd_batch, max_size=2, executor=pool, on_error="skip_batch")
    async with task.open([0, 2, 1, 4, 6, 8]) as stream:
        assert [x async for x in stream] == [2, 14]
    [failure] = task_failures(stream)
    assert failure.item == [1, 4]
    assert failure.remote_traceback is not None


async def test_an_error_handler_replaces_a_remote_failure(pool: ProcessPoolExecutor) -> None:
    class Negate(ErrorHandler):
        async def handle_error(
            self, error: Exception, item: Any, task_name: str, attempt: int
        ) -> tuple[bool, Any]:
            assert isinstance(error, fn.Odd)
            return True, -item

    task = SingleTask(fn.fail_on_odd, executor=pool, error_handler=Negate())
    assert await task(range(4)).collect() == [0, -1, 2, -3]


async def test_an_error_handler_that_raises_is_noted_with_the_task_and_item(
    threads: ThreadPoolExecutor,
) -> None:
    class Broken(ErrorHandler):
        async def handle_error(
            self, error: Exception, item: Any, task_name: str, attempt: int
        ) -> tuple[bool, Any]:
            raise LookupError("no fallback")

    task = SingleTask(fn.fail_on_odd, executor=threads, error_handler=Broken())
    with pytest.raises(LookupError, match="no fallback") as caught:
        await task([0, 1]).collect()
    notes = getattr(caught.value, "__notes__", [])
    assert "conveyor: the error handler of task 'fail_on_odd' failed on item 1" in notes


async def test_a_remote_exception_that_cannot_be_pickled_arrives_as_remote_error(
    pool: ProcessPoolExecutor,
) -> None:
    task = SingleTask(fn.raise_unpicklable, executor=pool)
    with pytest.raises(RemoteError, match="Unpicklable error"):
        await task([1]).collect()


class Flaky:
    """Fails the first ``failures`` attempts of each item (threads share it)."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts: dict[int, int] = {}
        self.lock = threading.Lock()

    def __call__(self, x: int) -> int:
        with self.lock:
            self.attempts[x] = self.attempts.get(x, 0) + 1
            if self.attempts[x] <= self.failures:
                raise ConnectionError(f"attempt {self.attempts[x]} of {x}")
        return x


async def test_retries_try_each_failed_call_again(threads: ThreadPoolExecutor) -> None:
    flaky = Flaky(failures=2)
    task = SingleTask(flaky, executor=threads, retry_config=_retry(3))
    assert await task(range(5)).collect() == list(range(5))
    assert flaky.attempts == dict.fromkeys(range(5), 3)


async def test_exhausted_retries_go_to_the_skip_policy(threads: ThreadPoolExecutor) -> None:
    flaky = Flaky(failures=5)
    task = SingleTask(flaky, executor=threads, retry_config=_retry(2), on_error="skip_item")
    async with task.open(range(3)) as stream:
        assert [x async for x in stream] == []
    assert [f.attempts for f in task_failures(stream)] == [2, 2, 2]


def _retry(attempts: int) -> Any:
    from conveyor import RetryConfig

    return RetryConfig(max_attempts=attempts, base_delay=0.0)


async def test_timeout_abandons_the_attempt_and_goes_to_the_policy() -> None:
    release = threading.Event()
    with ThreadPoolExecutor(2) as own:

        def stuck_on_zero(x: int) -> int:
            if x == 0:
                release.wait(30)
            return x

        task = SingleTask(stuck_on_zero, executor=own, timeout=0.2, on_error="skip_item")
        try:
            async with task.open(range(4)) as stream:
                assert [x async for x in stream] == [1, 2, 3]
            [failure] = task_failures(stream)
            assert failure.item == 0
            assert isinstance(failure.exception, TimeoutError)
        finally:
            release.set()


# -- limits, chunks, threads ----------------------------------------------------


def test_microsecond_calls_travel_in_big_chunks_and_slow_calls_alone() -> None:
    quick = _Sizer(None)
    assert quick.size(128) == 1  # nothing measured yet
    quick.measured(calls=1, worker_seconds=2e-6, round_trip_seconds=100e-6)
    assert quick.size(128) == 128
    slow = _Sizer(None)
    slow.measured(calls=1, worker_seconds=0.1, round_trip_seconds=0.101)
    assert slow.size(128) == 1
    assert _Sizer(25).size(128) == 25


async def test_chunk_size_sets_the_calls_per_round_trip(threads: ThreadPoolExecutor) -> None:
    executor = recording(threads)
    task = SingleTask(fn.identity, executor=executor, chunk_size=10)
    assert await task(range(100)).collect() == list(range(100))
    assert len(executor.record.futures) == 10


async def test_statistics_count_calls_not_round_trips(threads: ThreadPoolExecutor) -> None:
    task = SingleTask(fn.fail_on_odd, executor=threads, chunk_size=10, on_error="skip_item")
    async with task.open(range(100)) as stream:
        assert len([x async for x in stream]) == 50
        stage = stream.statistics().stages[0]
    assert (stage.calls_started, stage.calls_finished, stage.calls_failed) == (100, 50, 50)


async def test_quick_calls_share_round_trips(pool: ProcessPoolExecutor) -> None:
    executor = recording(pool)
    task = SingleTask(fn.identity, executor=executor)
    assert await task(range(2000)).collect() == list(range(2000))
    assert len(executor.record.futures) < 2000 / 4


async def test_concurrency_limit_counts_calls_not_round_trips(
    threads: ThreadPoolExecutor,
) -> None:
    running = 0
    most = 0
    lock = threading.Lock()

    def count(x: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        threading.Event().wait(0.002)
        with lock:
            running -= 1
        return x

    task = SingleTask(count, executor=threads, concurrency_limit=3, chunk_size=1)
    async with task.open(range(60)) as stream:
        assert [x async for x in stream] == list(range(60))
        assert stream.statistics().stages[0].concurrency_limit == 3
    assert most <= 3


async def test_no_thread_is_held_per_call_in_flight() -> None:
    context = multiprocessing.get_context("spawn")
    go = context.Event()
    with ProcessPoolExecutor(
        4, mp_context=context, initializer=fn.init_blocked, initargs=(go,)
    ) as blocked:
        task = SingleTask(fn.wait_for_go, executor=blocked, concurrency_limit=1000, chunk_size=1)
        before = threading.active_count()
        async with task.open(range(1000)) as stream:
            with anyio.fail_after(60):
                while stream.statistics().stages[0].calls_waiting < 1000:
                    await anyio.sleep(0.01)
            during = threading.active_count()
            go.set()
            assert [x async for x in stream] == list(range(1000))
    # The pool's own management threads only (the pool starts them on first use).
    assert during - before <= 3


async def test_a_stop_cancels_every_queued_call_and_submits_nothing_after() -> None:
    context = multiprocessing.get_context("spawn")
    go = context.Event()
    with ProcessPoolExecutor(
        2, mp_context=context, initializer=fn.init_blocked, initargs=(go,)
    ) as blocked:
        try:
            executor = recording(blocked)
            futures = executor.record.futures
            task = SingleTask(fn.wait_for_go, executor=executor, concurrency_limit=50, chunk_size=1)
            with anyio.move_on_after(60) as scope:
                async with task.open(range(1000)):
                    while len(futures) < 50:  # every call the limit allows is submitted
                        await anyio.sleep(0.01)
                    scope.cancel()
            assert len(futures) == 50
            assert sum(f.cancelled() for f in futures) >= 50 - 2 - 4  # all but running/claimed
            assert all(f.cancelled() or f.running() or f.done() for f in futures)
        finally:
            go.set()  # (also when an assertion fails: the pool's shutdown waits for its calls)
        await anyio.sleep(0.1)  # callbacks of the running calls fire after the run: no effect
        assert len(futures) == 50


class _CountingPool(ThreadPoolExecutor):
    """A pool of one thread that counts its submits."""

    def __init__(self) -> None:
        super().__init__(1)
        self.submits = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.submits += 1
        return super().submit(fn, *args, **kwargs)


async def test_a_call_queued_in_the_pool_never_starts_after_the_stop() -> None:
    # The pool's one worker is busy with the first call until just before the
    # stop; the three others wait in the pool's queue. The stop must cancel them at once:
    # if they were cancelled only as each waiting task met its cancellation,
    # the worker, free by then, would start them after the stop. Switching
    # threads only at a blocking call (a long switch interval) makes the
    # worker wait for the event loop to block, which it does after the stop.
    started: list[int] = []
    release = threading.Event()

    def call(x: int) -> int:
        started.append(x)
        if len(started) == 1:  # the first call to start holds the worker
            release.wait(30)
        return x

    interval = sys.getswitchinterval()
    with _CountingPool() as one_worker:
        task = SingleTask(call, executor=one_worker, concurrency_limit=4, chunk_size=1)
        try:
            async with task.open(range(100)):
                with anyio.fail_after(30):
                    while one_worker.submits < 4 or not started:
                        await anyio.sleep(0.01)
                sys.setswitchinterval(5.0)
                release.set()
            # (leaving the block is the stop)
        finally:
            sys.setswitchinterval(interval)
            release.set()
    assert len(started) == 1


@pytest.mark.parametrize("stop", ["break", "failure"])
async def test_a_pool_thread_starts_no_call_of_its_round_trip_after_the_stop(stop: str) -> None:
    # A round trip hands a thread of the user's pool many calls at once; the
    # thread looks at the stop before each. At most the calls the pool's
    # threads were already taking (4) may begin after it, never the rest of
    # their round trips (about 150 did).
    starts: list[float] = []

    def work(n: int) -> int:
        starts.append(time.monotonic())
        time.sleep(0.001)
        if stop == "failure" and n == 100:
            raise ValueError(n)
        return n

    with ThreadPoolExecutor(4) as four_threads:
        task = SingleTask(work, executor=four_threads)
        for _ in range(5):
            starts.clear()
            try:
                async with task.open(range(5000)) as results:
                    async for n in results:
                        if n == 100:
                            break
            except ValueError:
                assert stop == "failure"
            exited = time.monotonic()
            await anyio.sleep(0.1)  # what the threads still do shows by now
            assert sum(started > exited for started in starts) <= 4


async def test_a_pool_process_starts_no_call_of_its_round_trip_after_the_stop(
    pool: ProcessPoolExecutor, tmp_path: Path
) -> None:
    # A round trip already running in a worker process of the user's pool
    # looks for the stop before each call: at most the calls its workers (2)
    # were already making may begin after it (about 340 did).
    log = tmp_path / "starts.log"
    task = SingleTask(fn.log_start, executor=pool)
    async with task.open((str(log), n) for n in range(5000)) as results:
        async for n in results:
            if n == 100:
                break
    exited = time.time()
    await anyio.sleep(0.5)  # what the workers still do shows by now
    starts = [float(line) for line in log.read_text().split()]
    assert sum(started > exited for started in starts) <= 2
    assert len(starts) < 1000


class CallLog(Instrument):
    """The values of the calls announced to instruments, and of those cancelled."""

    def __init__(self) -> None:
        self.started: list[Any] = []
        self.cancelled: list[Any] = []

    def call_started(self, call: CallInfo) -> None:
        self.started.append(call.value)

    def call_failed(self, call: CallInfo) -> None:
        if call.cancelled:
            self.cancelled.append(call.value)


class CutTrip:
    """A run stopped while call 2 of a round trip of 10 calls ran (calls 0-2 ran)."""

    def __init__(self, ran: list[int], stage: StageStatistics, log: CallLog, quota: RateLimiter):
        self.ran = ran
        self.stage = stage
        self.log = log
        self.quota = quota


async def _cut_in_a_pool_thread() -> CutTrip:
    # One thread takes the round trip; the run stops while call 2 runs.
    ran: list[int] = []
    reached, go = threading.Event(), threading.Event()

    def work(n: int) -> int:
        ran.append(n)
        if n == 2:
            reached.set()
            go.wait(30)
        return n

    quota = RateLimiter(1, per=3600, burst=10)  # all 10 tokens at once; none refill
    log = CallLog()
    with ThreadPoolExecutor(1) as one_thread:
        task = SingleTask(work, executor=one_thread, chunk_size=10, rate_limit=quota)
        try:
            async with task.with_instruments(log).open(range(10)) as results:
                with anyio.fail_after(30):
                    while not reached.is_set():
                        await anyio.sleep(0.01)
            # (leaving the block is the stop)
        finally:
            go.set()
    return CutTrip(ran, results.statistics().stages[0], log, quota)


async def _cut_in_a_pool_process(
    pool: ProcessPoolExecutor, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> CutTrip:
    # A worker process takes the round trip; the run stops while call 2 runs,
    # which returns once the stop's marker is there. The reply, awaited
    # briefly after the stop, tells how many calls started.
    monkeypatch.setattr(tempfile, "tempdir", str(folder))  # the stop marker goes here
    monkeypatch.setattr(executors, "STOP_GRACE", 30.0)  # a generous bound on a busy machine
    quota = RateLimiter(1, per=3600, burst=10)
    log = CallLog()
    ran = folder / "ran.log"
    task = SingleTask(
        fn.third_call_waits_for_the_stop, executor=pool, chunk_size=10, rate_limit=quota
    )
    async with task.with_instruments(log).open((str(folder), n) for n in range(10)) as results:
        with anyio.fail_after(30):
            while not ran.exists() or len(ran.read_text().split()) < 3:
                await anyio.sleep(0.01)
    log.started = [n for _, n in log.started]
    log.cancelled = [n for _, n in log.cancelled]
    ran_values = [int(n) for n in ran.read_text().split()]
    return CutTrip(ran_values, results.statistics().stages[0], log, quota)


@pytest.fixture(params=["pool thread", "pool process"])
async def cut_trip(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> CutTrip:
    if request.param == "pool thread":
        cut = await _cut_in_a_pool_thread()
    else:
        cut = await _cut_in_a_pool_process(request.getfixturevalue("pool"), tmp_path, monkeypatch)
    assert cut.ran == [0, 1, 2]  # the worker skipped calls 3 to 9
    return cut


async def test_a_round_trip_cut_by_the_stop_counts_only_the_calls_that_started(
    cut_trip: CutTrip,
) -> None:
    assert cut_trip.stage.calls_started == 3


async def test_instruments_hear_only_of_the_calls_a_cut_round_trip_started(
    cut_trip: CutTrip,
) -> None:
    assert cut_trip.log.started == [0, 1, 2]
    assert cut_trip.log.cancelled == [0, 1, 2]


async def test_a_round_trip_cut_by_the_stop_gives_back_the_tokens_of_calls_it_skipped(
    cut_trip: CutTrip,
) -> None:
    assert cut_trip.quota.statistics().granted == 3


async def test_a_stop_waits_for_a_process_pools_reply_no_longer_than_its_grace(
    pool: ProcessPoolExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Call 2 of the round trip runs on after the run has ended: the stop
    # waited for its reply only STOP_GRACE, then counted every call of the
    # round trip as started, as docs/scaling.md says (it cannot know better).
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(executors, "STOP_GRACE", 0.05)
    ran = tmp_path / "ran.log"
    task = SingleTask(fn.third_call_waits_for_release, executor=pool, chunk_size=10)
    try:
        async with task.open((str(tmp_path), n) for n in range(10)) as results:
            with anyio.fail_after(30):
                while not ran.exists() or len(ran.read_text().split()) < 3:
                    await anyio.sleep(0.01)
        assert results.statistics().stages[0].calls_started == 10
    finally:
        (tmp_path / "release").touch()  # call 2 ends; the worker skips the rest


# -- per-worker state -------------------------------------------------------------


async def test_state_cached_in_a_module_loads_once_per_anyio_worker_process() -> None:
    results = await SingleTask(fn.predict, executor="process", chunk_size=5)(range(40)).collect()
    assert [x for x, _, _ in results] == list(range(40))
    assert {loads for _, _, loads in results} == {1}


async def test_a_pool_initializer_loads_state_once_per_worker() -> None:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=context, initializer=fn.init_pool_state) as own:
        task = SingleTask(fn.predict_from_pool_state, executor=own, chunk_size=5)
        results = await task(range(40)).collect()
    assert [x for x, _, _ in results] == list(range(40))
    assert {loads for _, _, loads in results} == {1}


# -- the worked example of docs/scaling.md -----------------------------------------


@pytest.mark.parametrize("where", ["process", "pool"])
def test_the_cpu_bound_example_runs(where: str) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "cpu_bound.py"), where],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "500 items in order" in done.stdout


MAIN_SCRIPT_CLASSES = """
import sys
import anyio
from conveyor import single_task

class Refused(Exception):
    pass

class Point:
    def __init__(self, x):
        self.x = x

@single_task(executor="process", on_error="skip_item", chunk_size=4)
def check(n):
    if n == 6:
        raise Refused(n)
    return Point(n)

async def main():
    stream = check(range(12))
    points = await stream.collect()
    print([p.x for p in points], [(f.item, type(f.exception).__name__) for f in stream.failures])

if __name__ == "__main__":
    anyio.run(main, backend=sys.argv[1])
"""


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_classes_of_the_main_script_come_back_from_worker_processes(
    backend: str, tmp_path: Path
) -> None:
    # A worker runs the script as __mp_main__: what it returns or raises of
    # the script's own classes must still come back, call by call.
    script = tmp_path / "script.py"
    script.write_text(MAIN_SCRIPT_CLASSES)
    done = subprocess.run(
        [sys.executable, str(script), backend],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11] [(6, 'Refused')]"


# -- the run's max_parallelism, shared by executor stages ---------------------------


class _SignallingPool(ThreadPoolExecutor):
    """A thread pool that sets ``submitted`` (an anyio Event) at each submit."""

    def __init__(self) -> None:
        super().__init__(2)
        self.submitted = anyio.Event()
        self.trips: list[list[Any]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.trips.append(next(arg for arg in args if isinstance(arg, list)))  # its values
        self.submitted.set()  # (submit is called on the event loop's thread)
        return super().submit(fn, *args, **kwargs)


async def test_an_executor_stage_sends_what_free_run_slots_allow_rather_than_hold_them() -> None:
    # max_parallelism=2: ``hold``'s call on 0 keeps one slot until ``shipped``
    # has sent a round trip; ``shipped`` wants round trips of two calls. Holding
    # the one free slot while waiting for a second would stop the run.
    with _SignallingPool() as signalling:

        @single_task
        async def hold(x: int) -> int:
            if x == 0:
                await signalling.submitted.wait()
            return x

        shipped = SingleTask(fn.identity, executor=signalling, chunk_size=2)
        pipeline = (hold | shipped).with_context(max_parallelism=2)
        with anyio.fail_after(20):  # a deadlock fails here instead of hanging
            assert await pipeline(range(3)).collect() == [0, 1, 2]
        assert signalling.trips[0] == [1]  # cut to the one free slot


async def test_a_round_trip_due_after_the_stop_submits_nothing() -> None:
    # A round trip's task may first run after the stop (a break, a failure):
    # it must not submit its calls then, only wait for its cancellation.
    stop = Stop()
    with _SignallingPool() as signalling:
        calls = OffloadCalls(
            fn.identity,
            (),
            {},
            name="late",
            policy=CallPolicy(),
            record_failure=lambda failure: None,
            offloader=offloader_for(signalling)(),
            stop=stop,
        )
        stop.set()
        async with anyio.create_task_group() as tg:
            tg.start_soon(calls.round_trip, [1, 2])
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
        assert signalling.trips == []
        assert calls.calls_started == 0
