"""Where a task's calls run: the ``executor=`` option of ``single_task`` and ``batch_task``.

- ``None`` (the default): on the event loop's thread.
- ``"thread"``: in anyio's worker threads (the same as ``run_in_thread=True``).
- ``"process"``: in anyio's worker processes (``anyio.to_process``: shared per
  event loop, started on first use, one per CPU by default, shut down by anyio).
- any :class:`concurrent.futures.Executor` you own: a ``ThreadPoolExecutor``,
  a ``ProcessPoolExecutor``, loky's reusable executor, a Dask
  ``distributed.Client(...).get_executor()``. conveyor never shuts it down.

For processes and executors, a round trip carries a chunk of calls (see
``docs/scaling.md``). Waiting for a round trip never holds a thread: the
future's done-callback wakes the event loop through its thread-safe
call-soon (``loop.call_soon_threadsafe`` or trio's ``run_sync_soon``), and a
callback that fires after the run has ended does nothing.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, Literal, TypeVar

import anyio
import anyio.to_process

from ._engine._backend import Loop, current_loop

__all__ = [
    "ExecutorLike",
    "check_executor",
    "check_run_in_thread",
    "offloader_for",
    "wait_for_future",
]

T = TypeVar("T")

#: Seconds a stop waits, at most, for the reply of a round trip running in a
#: process of the user's ``ProcessPoolExecutor``: the worker looks for the
#: stop before each call, so the reply comes once the call it is making ends,
#: and tells which calls started (see ``docs/scaling.md``, Stopping).
STOP_GRACE = 0.5

#: What ``executor=`` accepts.
ExecutorLike = Literal["thread", "process"] | Executor | None


def check_run_in_thread(run_in_thread: object) -> None:
    """Raise TypeError unless ``run_in_thread`` is a bool (``"no"`` or ``0`` would read as one)."""
    if not isinstance(run_in_thread, bool):
        raise TypeError(f"run_in_thread must be a bool (True or False), got {run_in_thread!r}")


def check_executor(executor: object) -> None:
    """Raise TypeError/ValueError unless ``executor`` is an accepted ``executor=`` value."""
    if executor is None or isinstance(executor, Executor):
        return
    if isinstance(executor, str):
        if executor in ("thread", "process"):
            return
        raise ValueError(
            f'executor must be "thread", "process", a concurrent.futures.Executor or None, '
            f"got {executor!r}"
        )
    raise TypeError(
        'executor must be "thread", "process", a concurrent.futures.Executor or None, '
        f"got {executor!r}"
    )


def _async_kind(func: Callable[..., Any]) -> str | None:
    """What kind of async function ``func`` is (for messages), or None if it is sync."""
    call = func if inspect.isroutine(func) else getattr(func, "__call__", func)  # noqa: B004
    if inspect.isasyncgenfunction(call):
        return "an async generator function"
    if inspect.iscoroutinefunction(call):
        return "async def"
    return None


def check_threadable(func: Callable[..., Any], option: str, task_name: str) -> None:
    """A TypeError unless ``func`` can run in a worker thread (it is sync).

    ``option`` names the setting that asked for threads, as the user wrote it.
    An async function would only make a coroutine there, and a thread would
    gain it nothing: it already runs on the event loop without blocking it.
    """
    kind = _async_kind(func)
    if kind is not None:
        raise TypeError(
            f"task {task_name!r}: {option} runs sync functions only, and this one is "
            f"{kind}; an async function runs on the event loop without blocking it, so "
            f"leave out {option} (or call its blocking part with anyio.to_thread.run_sync)"
        )


def check_offloadable(func: Callable[..., Any], executor: object, task_name: str) -> None:
    """A TypeError unless ``func`` can run in a worker process or on a cluster."""
    call = func if inspect.isroutine(func) else getattr(func, "__call__", func)  # noqa: B004
    kind = _async_kind(func)
    if kind is not None:
        raise TypeError(
            f"task {task_name!r}: executor={executor!r} runs sync functions only, and this "
            f"one is {kind}; await inside the event loop instead (no executor), or make it "
            "a plain def"
        )
    if inspect.isgeneratorfunction(call):
        # A round trip to an executor returns the call's result whole, in a
        # thread pool too: only the inline and executor="thread" paths can
        # pass each value on as the generator makes it.
        raise TypeError(
            f"task {task_name!r}: executor={executor!r} cannot stream a generator function's "
            "values, since a call in an executor comes back whole; a generator streams only "
            'inline (no executor) or with executor="thread" (run_in_thread=True), or '
            "return a list instead"
        )


async def wait_for_future(future: Future[T], loop: Loop) -> T:
    """The result of ``future``, awaited without holding a thread.

    On cancellation (a stop, a ``timeout``) the future is cancelled: a call
    that has not started never starts; one already running finishes in its
    worker and its result is discarded.
    """
    if not future.done():
        done = anyio.Event()
        loop_thread = threading.get_ident()

        def wake(_future: Future[T]) -> None:
            if threading.get_ident() == loop_thread:
                # Cancelled by the run (at its stop): set at once. A wake-up
                # through the loop's self-pipe would release the GIL between
                # two cancels, and a free pool worker could start a queued
                # call that the stop was about to cancel.
                done.set()
            else:
                loop.call_soon_threadsafe(done.set)

        future.add_done_callback(wake)
        try:
            await done.wait()
        except BaseException:
            future.cancel()
            raise
    return future.result()


class _ProcessOffloader:
    """anyio's worker processes: ``anyio.to_process.run_sync`` per round trip."""

    name = "process"
    in_process = False

    def __init__(self) -> None:
        self.workers = int(anyio.to_process.current_default_process_limiter().total_tokens)
        # A worker runs the main script as ``__mp_main__``, so what a call
        # returns or raises of a class defined there comes back pickled as
        # ``__mp_main__.Name``: alias that name to this process's main module,
        # as multiprocessing does when it is imported (anyio does not).
        main = sys.modules.get("__main__")
        if main is not None:
            sys.modules.setdefault("__mp_main__", main)

    async def run(self, func: Callable[..., T], *args: Any, trip: list[Any] | None = None) -> T:
        # cancellable: a stop does not wait for a running round trip (anyio
        # ends that worker process and starts a new one when next needed), so
        # which of its calls started stays unknown: ``trip`` gets nothing.
        return await anyio.to_process.run_sync(func, *args, cancellable=True)


class _ExecutorOffloader:
    """A user's ``concurrent.futures.Executor``: ``submit`` per round trip."""

    def __init__(self, executor: Executor) -> None:
        self._executor = executor
        self._loop = current_loop()
        self.name = type(executor).__name__
        self._submit: Callable[..., Future[Any]] = executor.submit
        #: Workers elsewhere (Dask): they cannot see the stop, and a future
        #: cancelled on the client may still run on a worker.
        self.remote = False
        if type(executor).__module__.split(".")[0] == "distributed":
            # The one seam to Dask (conveyor.integrations.dask).
            from .integrations.dask import submitter, worker_count

            self.workers = worker_count(executor)
            self._submit = submitter(executor)
            self.remote = True
        else:
            self.workers = _workers_of(executor)
        # Threads share this process: calls go to them without pickling.
        self.in_process = isinstance(executor, ThreadPoolExecutor)
        #: Futures submitted and not yet done: what a stop cancels.
        self.pending: set[Future[Any]] = set()
        #: A file that appears at the stop, for round trips already running in
        #: a worker process of this machine's pool (see ``_remote.run_calls``);
        #: None where workers may be elsewhere (Dask) or share the flag (threads).
        self.stop_marker: str | None = None
        if isinstance(executor, ProcessPoolExecutor):
            self.stop_marker = os.path.join(
                tempfile.gettempdir(), f"conveyor-stop-{uuid.uuid4().hex}"
            )
        self._trips_running = 0  # submitted round trips whose future is not done
        self._trips_lock = threading.Lock()  # (done callbacks run in the pool's thread)
        self._marked = False
        self._stopped = False

    def cancel_pending(self) -> None:
        """The run stopped: a call queued in the pool must not start after it,
        nor one later in a round trip that a worker process is running."""
        self._stopped = True
        # The marker first: a worker process that takes up a round trip from
        # the pool's call queue meanwhile (those cannot be cancelled) sees it.
        if self.stop_marker is not None:
            with self._trips_lock:
                if self._trips_running:
                    with contextlib.suppress(OSError):
                        open(self.stop_marker, "x").close()
                        self._marked = True
        for future in list(self.pending):
            future.cancel()  # (a running one goes on; its result is discarded)

    def _trip_done(self, _future: Future[Any]) -> None:
        """A round trip ended in its worker: the marker goes with the last one."""
        with self._trips_lock:
            self._trips_running -= 1
            if self._marked and not self._trips_running:
                self._marked = False
                assert self.stop_marker is not None
                with contextlib.suppress(OSError):
                    os.remove(self.stop_marker)

    async def run(self, func: Callable[..., T], *args: Any, trip: list[Any] | None = None) -> T:
        """``func(*args)`` in the pool; its result.

        ``trip``: a list that gets the round trip's future, for telling
        after a stop which of its calls started (left empty on Dask, whose
        futures do not tell). If the stop cancels the wait while a worker
        process of the user's pool runs the round trip, the wait for its
        reply goes on, shielded, for at most :data:`STOP_GRACE` seconds.
        """
        future = self._submit(func, *args)
        if self.stop_marker is not None:
            with self._trips_lock:
                self._trips_running += 1
            future.add_done_callback(self._trip_done)
        if trip is not None and not self.remote:
            trip.append(future)
        self.pending.add(future)
        try:
            return await wait_for_future(future, self._loop)
        except BaseException:
            if trip is not None and self.stop_marker is not None and self._stopped:
                await self._reply_after_stop(future)
            raise
        finally:
            self.pending.discard(future)

    async def _reply_after_stop(self, future: Future[Any]) -> None:
        """Wait briefly, shielded, for the reply of a round trip cut by the stop."""
        if future.done():
            return
        # A round trip that failed as a whole is of no interest after the
        # stop: the cancellation being handled goes on either way.
        deadline = anyio.current_time() + STOP_GRACE
        with anyio.CancelScope(shield=True, deadline=deadline), contextlib.suppress(Exception):
            await wait_for_future(future, self._loop)


def _workers_of(executor: Executor) -> int:
    """How many calls ``executor`` runs at once."""
    workers = getattr(executor, "_max_workers", None)
    if isinstance(workers, int) and workers > 0:
        return workers
    return os.cpu_count() or 2


def offloader_for(executor: Literal["process"] | Executor) -> Callable[[], Any]:
    """A factory, called at the start of each run, of the engine's offloader."""
    if executor == "process":
        return _ProcessOffloader
    assert isinstance(executor, Executor)
    return lambda: _ExecutorOffloader(executor)
