"""Functions the executor tests run in worker processes.

A worker imports this module to find them, so it stays light: no pytest.
``square`` is the headline case: a task decorated at a module's top level,
whose name now means the task, not the function.
"""

from __future__ import annotations

import contextvars
import functools
import os
import threading
import time
from typing import Any

from conveyor import get_current_context, single_task


@single_task(executor="process")
def square(x: int) -> int:
    return x * x


def where(x: int) -> tuple[int, int]:
    """The item and the process it ran in."""
    return x, os.getpid()


def shape(x: int) -> Any:
    """The output rule: None drops, a list flattens, anything else is one item."""
    if x % 3 == 0:
        return None
    if x % 3 == 1:
        return [x, x]
    return (x,)


def total(batch: list[int]) -> int:
    return sum(batch)


def halves(batch: list[int]) -> list[int]:
    return [x // 2 for x in batch]


class Odd(ValueError):
    """A user's own exception type, which must arrive as itself."""


def fail_on_odd(x: int) -> int:
    if x % 2:
        raise Odd(f"odd: {x}")
    return x


def fail_on_odd_batch(batch: list[int]) -> int:
    if any(x % 2 for x in batch):
        raise Odd(f"odd in {batch}")
    return sum(batch)


def add(x: int, offset: int, *, scale: int = 1) -> int:
    return (x + offset) * scale


def context_seen(x: int) -> Any:
    """What get_current_context() returns in the worker."""
    return get_current_context()


def sleepy(x: float) -> float:
    time.sleep(x)
    return x


# -- per-worker state ------------------------------------------------------

#: How often this process loaded the "model".
loads = 0


@functools.cache
def model() -> dict[str, int]:
    """Expensive state: loaded once per worker process, on first use."""
    global loads
    loads += 1
    return {"pid": os.getpid(), "loads": loads}


def predict(x: int) -> tuple[int, int, int]:
    state = model()
    return x, state["pid"], state["loads"]


#: Set by a pool's initializer, once per worker process.
pool_state: dict[str, int] | None = None


def init_pool_state() -> None:
    global pool_state
    pool_state = {"pid": os.getpid(), "loads": (pool_state or {"loads": 0})["loads"] + 1}


def predict_from_pool_state(x: int) -> tuple[int, int, int]:
    assert pool_state is not None, "the pool's initializer did not run"
    return x, pool_state["pid"], pool_state["loads"]


# -- a pool whose workers wait for a go-ahead --------------------------------

#: The event a blocked pool's workers wait for (set by their initializer).
go_ahead: Any = None


def init_blocked(event: Any) -> None:
    global go_ahead
    go_ahead = event


def wait_for_go(x: int) -> int:
    go_ahead.wait()
    return x


# -- threads ---------------------------------------------------------------


def thread_name(x: int) -> tuple[int, str]:
    return x, threading.current_thread().name


class Unpicklable:
    """An object with a lock in it: pickle refuses it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def __repr__(self) -> str:
        return "<Unpicklable>"


def identity(x: Any) -> Any:
    return x


def lock_result(x: int) -> Any:
    """A result that cannot travel back from a worker process."""
    return threading.Lock() if x == 2 else x


class UnpicklableError(Exception):
    """An exception pickle can write but not read back (its __init__ needs two args)."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"Unpicklable error {a} {b}")


def raise_unpicklable(x: int) -> int:
    raise UnpicklableError(x, x)


# -- Dask ------------------------------------------------------------------


def wait_for_dask_event(x: int) -> int:
    """Blocks a Dask worker until the client sets the event "conveyor-go"."""
    from distributed import Event

    Event("conveyor-go").wait(timeout=60)
    return x


def load_dask_model() -> dict[str, int]:
    global loads
    loads += 1
    return {"pid": os.getpid(), "loads": loads}


def predict_with_dask_state(x: int) -> tuple[int, int, int]:
    from conveyor.integrations.dask import worker_state

    state = worker_state("model")
    return x, state["pid"], state["loads"]


def describe_batch(batch: list[Any]) -> list[str]:
    return [repr(value) for value in batch]


last_value: contextvars.ContextVar[int | None] = contextvars.ContextVar("last_value", default=None)


def remember(x: int) -> int | None:
    """Sets a context variable; returns the value an earlier call left in it, if any."""
    seen = last_value.get()
    last_value.set(x)
    return seen


def log_start(item: tuple[str, int]) -> int:
    """Append when this call started (seconds since the epoch) to the file ``item[0]``."""
    path, n = item
    with open(path, "a") as log:
        log.write(f"{time.time()}\n")
    time.sleep(0.002)
    return n


def _third_call_waits_for(item: tuple[str, int], prefix: str) -> int:
    """Log ``n`` to ``folder/ran.log``; the call on 2 returns only once a file
    whose name starts with ``prefix`` has appeared in ``folder``."""
    folder, n = item
    with open(os.path.join(folder, "ran.log"), "a") as log:
        log.write(f"{n}\n")
    if n == 2:
        deadline = time.monotonic() + 30
        while not any(name.startswith(prefix) for name in os.listdir(folder)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {prefix}* file appeared")
            time.sleep(0.001)
    return n


def third_call_waits_for_the_stop(item: tuple[str, int]) -> int:
    """The call on 2 returns once the run's stop marker is in ``item[0]``."""
    return _third_call_waits_for(item, "conveyor-stop-")


def third_call_waits_for_release(item: tuple[str, int]) -> int:
    """The call on 2 returns once a file ``release`` is in ``item[0]``."""
    return _third_call_waits_for(item, "release")
