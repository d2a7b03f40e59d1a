"""What the engine needs to know about a task: a frozen, engine-side view.

The public task classes build one of these; the engine never imports them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._calls import CallPolicy

__all__ = ["DEFAULT_CHUNK", "DEFAULT_WINDOW", "StageSpec"]

#: Items a run admits at once unless a stage asks for more concurrency. Large
#: enough that small inputs run all at once, small enough to bound memory.
DEFAULT_WINDOW = 256

#: The most items that travel together between stages, unless a stage sets
#: its own ``chunk_size``.
DEFAULT_CHUNK = 128


@dataclass(frozen=True)
class StageSpec:
    """One stage of a pipeline, as the engine runs it."""

    func: Callable[..., Any]
    name: str
    policy: CallPolicy = field(default_factory=CallPolicy)
    batch: bool = False
    min_size: int = 1
    max_size: int = 1
    concurrency_limit: int | None = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    in_thread: bool = False
    chunk_size: int | None = None
    max_wait: float | None = None  # batch: seconds the oldest value may wait
    #: Makes the run's offloader (see ``_offload``) when calls run in processes
    #: or an executor; None runs them here (or in threads, ``in_thread``).
    offload: Callable[[], Any] | None = None
