"""The run context: what every task of one pipeline run shares.

Each run gets its own copy of the pipeline's :class:`PipelineContext`, with a
fresh ``pipeline_id``; inside any task of the run (in a worker thread too)
:func:`get_current_context` returns it, and ``context.data`` is one dict shared
by all the run's tasks. Concurrent runs never see each other's context.
"""

from __future__ import annotations

import copy as _copy
from collections.abc import Awaitable
from contextvars import Token
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, TypeVar, get_args

from ._engine._runvars import current_run_context

__all__ = [
    "ContextManager",
    "ExecutionMode",
    "PipelineContext",
    "get_current_context",
    "set_current_context",
    "with_context",
]

T = TypeVar("T")

#: How a run releases results: in input order, or as each one is ready.
ExecutionMode = Literal["ordered", "as_completed"]
EXECUTION_MODES: tuple[str, ...] = get_args(ExecutionMode)


def check_execution_mode(mode: object) -> ExecutionMode:
    """``mode`` itself if it is a valid execution mode, else ``ValueError``."""
    if mode not in EXECUTION_MODES:
        raise ValueError(
            f"execution_mode must be one of {', '.join(map(repr, EXECUTION_MODES))}, got {mode!r}"
        )
    return mode  # type: ignore[return-value]


@dataclass
class PipelineContext:
    """Settings of a pipeline and the shared state of one run.

    ``execution_mode``: ``"ordered"`` (default) or ``"as_completed"``.
    ``max_parallelism``: the most calls in flight across all stages of a run
    (``None``: only each stage's own limit applies).
    ``pipeline_id``: a fresh uuid4 string for every run.
    ``data``: free-form values, one dict shared by all tasks of a run.
    """

    execution_mode: ExecutionMode = "ordered"
    max_parallelism: int | None = None
    pipeline_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_execution_mode(self.execution_mode)
        if self.max_parallelism is not None and (
            isinstance(self.max_parallelism, bool)
            or not isinstance(self.max_parallelism, int)
            or self.max_parallelism < 1
        ):
            raise ValueError(
                f"max_parallelism must be a positive int or None, got {self.max_parallelism!r}"
            )

    def copy(self) -> PipelineContext:
        """A copy with its own ``data`` dict (values are shared, not copied)."""
        new = _copy.copy(self)
        new.data = dict(self.data)
        return new


def get_current_context() -> PipelineContext | None:
    """The context of the run the calling task belongs to; ``None`` outside a run."""
    context: PipelineContext | None = current_run_context.get()
    return context


def set_current_context(context: PipelineContext | None) -> Token[Any]:
    """Make ``context`` current in the calling task; returns a token to reset it.

    Prefer :class:`ContextManager`, which restores the previous context.
    """
    return current_run_context.set(context)


class ContextManager:
    """``with ContextManager(ctx):`` makes ``ctx`` current inside the block.

    On leaving the block the previous context is current again, also when the
    block raises. Entering returns ``ctx``.

    Args:
        context: The context to make current (``None``: no context).
    """

    def __init__(self, context: PipelineContext | None) -> None:
        self.context = context
        self._token: Token[Any] | None = None

    def __enter__(self) -> PipelineContext | None:
        self._token = current_run_context.set(self.context)
        return self.context

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            current_run_context.reset(self._token)
            self._token = None


async def with_context(context: PipelineContext | None, awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` with ``context`` as the current context."""
    with ContextManager(context):
        return await awaitable
