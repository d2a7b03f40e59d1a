"""The context variable that tells a task which run it belongs to."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

__all__ = ["current_run_context"]

#: The running pipeline's context object (a ``PipelineContext``), or None.
current_run_context: ContextVar[Any] = ContextVar("conveyor_run_context", default=None)
