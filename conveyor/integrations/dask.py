"""Dask: run a stage's calls on a ``distributed`` cluster.

Pass ``client.get_executor()`` as a task's ``executor=``; nothing else is
needed (``pip install 'conveyor[dask]'``). This module holds what conveyor
has to ask Dask: how many calls the cluster runs at once, and
:func:`worker_state_plugin`, a worker plugin that loads expensive state (a model)
once per worker process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["submitter", "worker_count", "worker_state", "worker_state_plugin"]

_EXTRA = "conveyor's Dask integration needs distributed: pip install 'conveyor[dask]'"


def _distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise ImportError(_EXTRA) from exc
    return distributed


def worker_count(executor: Any) -> int:
    """How many calls a Dask ``ClientExecutor`` runs at once: its cluster's threads."""
    _distributed()
    client = executor._client
    threads: dict[str, int] = client.nthreads()
    return max(1, sum(threads.values()))


def submitter(executor: Any) -> Callable[..., Any]:
    """``executor.submit``, with every round trip a task of its own (``pure=False``).

    A ``ClientExecutor`` submits with ``pure=True`` unless told otherwise: two
    identical round trips (of two runs, say) would share one key, and
    cancelling one at a stop would cancel the other.
    """

    def submit(func: Callable[..., Any], *args: Any) -> Any:
        return executor.submit(func, *args, pure=False)

    return submit


#: The attribute of a Dask worker that holds each worker state's value.
_STATE = "conveyor_state"

_plugin_class: type | None = None


def _worker_state_class() -> type:
    """``WorkerStatePlugin``, made on first use (it subclasses Dask's ``WorkerPlugin``)."""
    global _plugin_class
    if _plugin_class is None:
        base = _distributed().WorkerPlugin

        class WorkerStatePlugin(base):  # type: ignore[misc, valid-type]
            """Loads one named value on every worker: see :func:`worker_state_plugin`."""

            idempotent = True

            def __init__(self, name: str, load: Callable[[], Any]) -> None:
                self.name = name
                self.load = load

            def setup(self, worker: Any) -> None:
                states = getattr(worker, _STATE, None)
                if states is None:
                    states = {}
                    setattr(worker, _STATE, states)
                states[self.name] = self.load()

            def teardown(self, worker: Any) -> None:
                getattr(worker, _STATE, {}).pop(self.name, None)

        WorkerStatePlugin.__module__ = __name__
        _plugin_class = WorkerStatePlugin
    return _plugin_class


def __getattr__(name: str) -> Any:
    # Lets pickle find the plugin class by reference on a worker.
    if name == "WorkerStatePlugin":
        return _worker_state_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def worker_state_plugin(name: str, load: Callable[[], Any]) -> Any:
    """A Dask worker plugin that calls ``load()`` once on every worker.

    ``client.register_plugin(worker_state_plugin("model", load_model))`` loads
    the value on every worker of the cluster, and on workers that join later;
    a task function reads it with :func:`worker_state`. ``load`` must be
    picklable (a function at a module's top level).
    """
    _distributed()
    return _worker_state_class()(name, load)


def worker_state(name: str) -> Any:
    """Inside a call on a Dask worker: the value :func:`worker_state_plugin` ``name`` loaded.

    Raises LookupError if no such plugin was registered.
    """
    worker = _distributed().get_worker()
    try:
        return getattr(worker, _STATE)[name]
    except (AttributeError, KeyError):
        raise LookupError(
            f"no worker state {name!r} on this worker: register it with "
            f"client.register_plugin(worker_state_plugin({name!r}, load))"
        ) from None
