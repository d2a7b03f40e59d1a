"""conveyor: async streaming pipelines on AnyIO structured concurrency.

Chain async or sync functions with ``|``, feed them data, and get results
streamed back as soon as they are ready: in input order (the default) or in
completion order, on asyncio and on trio.
"""

from __future__ import annotations

from .context import (
    ContextManager,
    ExecutionMode,
    PipelineContext,
    get_current_context,
    set_current_context,
    with_context,
)
from .decorators import batch_task, single_task
from .error_handling import ErrorAction, ErrorHandler, Failure, LoggingErrorHandler, RetryConfig
from .exceptions import BatchRemainderError
from .flow import RateLimit, RateLimiter, RateLimiterStatistics
from .instrumentation import CallInfo, Instrument, RunInfo
from .pipeline import Pipeline
from .sources import read_in_thread
from .statistics import CallDurations, RunStatistics, StageStatistics
from .stream import AsyncStream
from .tasks import BaseTask, BatchTask, SingleTask

#: The version of this package (a PEP 440 string; also in the package metadata).
__version__ = "2.0.0.dev0"

__all__ = [
    "AsyncStream",
    "BaseTask",
    "BatchRemainderError",
    "BatchTask",
    "CallDurations",
    "CallInfo",
    "ContextManager",
    "ErrorAction",
    "ErrorHandler",
    "ExecutionMode",
    "Failure",
    "Instrument",
    "LoggingErrorHandler",
    "Pipeline",
    "PipelineContext",
    "RateLimit",
    "RateLimiter",
    "RateLimiterStatistics",
    "RetryConfig",
    "RunInfo",
    "RunStatistics",
    "SingleTask",
    "StageStatistics",
    "__version__",
    "batch_task",
    "get_current_context",
    "read_in_thread",
    "set_current_context",
    "single_task",
    "with_context",
]
