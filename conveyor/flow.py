"""Flow control: rate limits shared across stages, pipelines and runs.

``RateLimit`` describes a limit; ``RateLimiter`` enforces one and can be
shared. Both are also exported from ``conveyor``. Batching by size or time
and concurrent batch calls are options of ``batch_task`` (``max_wait``,
``concurrency_limit``). See ``docs/flow-control.md``.
"""

from __future__ import annotations

from ._engine._ratelimit import RateLimit, RateLimiter, RateLimiterStatistics

__all__ = ["RateLimit", "RateLimiter", "RateLimiterStatistics"]
