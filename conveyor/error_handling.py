"""Error policies: what a task does when a call fails.

After ``retry_attempts`` tries (the delays between them set by
:class:`RetryConfig`), a failure is given to the task's ``error_handler`` if it
has one, else to its ``on_error`` action: ``"fail"`` stops the whole run and the
consumer gets the original exception; ``"skip_item"``/``"skip_batch"`` drop the
item or batch, record a :class:`Failure`, and the run goes on.
Cancellation and other ``BaseException``s are never retried, skipped or handled.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args

from ._engine._logs import log_fields, where

__all__ = ["ErrorAction", "ErrorHandler", "Failure", "LoggingErrorHandler", "RetryConfig"]

#: What a task does with a failure that retries did not cure.
ErrorAction = Literal["fail", "skip_item", "skip_batch"]
ERROR_ACTIONS: tuple[str, ...] = get_args(ErrorAction)


def check_error_action(action: object) -> ErrorAction:
    """``action`` itself if it is a valid ``on_error`` value, else ``ValueError``."""
    if action not in ERROR_ACTIONS:
        raise ValueError(
            f"on_error must be one of {', '.join(map(repr, ERROR_ACTIONS))}, got {action!r}"
        )
    return action  # type: ignore[return-value]


def _check_number(name: str, value: object, *, minimum: float, allow_equal: bool = True) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if value < minimum or (not allow_equal and value == minimum):
        bound = ">=" if allow_equal else ">"
        raise ValueError(f"{name} must be {bound} {minimum}, got {value!r}")


@dataclass(frozen=True)
class RetryConfig:
    """How often and how patiently a failing call is tried again.

    ``max_attempts`` counts every try (1 means no retry). After failed attempt
    ``k`` the next waits ``base_delay * backoff_multiplier ** (k - 1)`` seconds
    (``base_delay`` every time without ``exponential_backoff``), at most
    ``max_delay``; with ``jitter`` a random time between 0 and that ("full
    jitter", so that many failing calls do not retry in lockstep). Only
    exceptions that are instances of ``retry_on`` are retried; others go
    straight to the task's error policy.

    ``retry_after(exc)``, if given, is asked first after each retried
    failure: seconds to wait (what the server asked for, such as an HTTP
    429's ``Retry-After``), capped at ``max_delay``, or ``None`` for the
    backoff above.
    """

    max_attempts: int = 3
    base_delay: float = 1.0
    exponential_backoff: bool = True
    max_delay: float = 60.0
    backoff_multiplier: float = 2.0
    jitter: bool = False
    retry_on: tuple[type[Exception], ...] = (Exception,)
    retry_after: Callable[[Exception], float | None] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise TypeError(
                f"max_attempts (retry_attempts) must be an int, got {self.max_attempts!r}"
            )
        if self.max_attempts < 1:
            raise ValueError(
                "max_attempts (retry_attempts) must be >= 1 (1 means no retry), "
                f"got {self.max_attempts}"
            )
        _check_number("base_delay (retry_delay)", self.base_delay, minimum=0)
        _check_number("max_delay (retry_max_delay)", self.max_delay, minimum=0)
        _check_number("backoff_multiplier", self.backoff_multiplier, minimum=1)
        retry_on = self.retry_on
        if isinstance(retry_on, type):
            retry_on = (retry_on,)
            object.__setattr__(self, "retry_on", retry_on)
        if not isinstance(retry_on, tuple) or not all(
            isinstance(kind, type) and issubclass(kind, Exception) for kind in retry_on
        ):
            raise TypeError(
                "retry_on must be an Exception subclass or a tuple of them "
                f"(BaseExceptions are never retried), got {self.retry_on!r}"
            )
        if self.retry_after is not None and not callable(self.retry_after):
            raise TypeError(
                "retry_after must be a function of the exception returning seconds or None, "
                f"got {self.retry_after!r}"
            )

    def delay_after(self, attempt: int) -> float:
        """The delay after failed attempt ``attempt`` (1-based), before jitter."""
        if not self.exponential_backoff:
            return min(self.base_delay, self.max_delay)
        return min(self.base_delay * self.backoff_multiplier ** (attempt - 1), self.max_delay)


@dataclass(frozen=True)
class Failure:
    """A call whose failure the run went on past, or values it could not process.

    One record per failed *call* (api.md §6), never per round trip:

    - ``item``: the input of the failed call (the list, for a batch task; the
      leftover values, for a :class:`~conveyor.BatchRemainderError`).
    - ``exception``: the last exception. A failure raised in a worker process
      or on a cluster keeps its original type; see ``remote_traceback``.
    - ``task_name``: the stage.
    - ``attempts``: how many times the call was tried (0: never called).
    - ``values_passed_on``: values the call had already passed on to the next
      stage before it failed (a generator task that failed part-way). Those
      values stay passed on and are released in their turn; a call that has
      passed a value on is never retried.
    - ``remote_traceback``: the traceback text from the worker process or
      cluster where the call ran, or None for calls run in this process.
    """

    item: Any
    exception: Exception
    task_name: str
    attempts: int
    values_passed_on: int = 0
    remote_traceback: str | None = None


class ErrorHandler(ABC):
    """Decides, after retries, what becomes of a failed call.

    ``handle_error`` returns ``(True, value)`` to go on with ``value`` as the
    call's result (the output rules apply: ``None`` drops the item, a list is
    flattened) or ``(False, anything)`` to fail the run with ``error``.
    For a batch task, ``item`` is the batch (a list).
    """

    @abstractmethod
    async def handle_error(
        self, error: Exception, item: Any, task_name: str, attempt: int
    ) -> tuple[bool, Any]:
        """Return ``(go_on, replacement)`` for ``error``, raised by ``item``'s last attempt."""


class LoggingErrorHandler(ErrorHandler):
    """Logs each failure at ERROR level and goes on with ``replacement_value``.

    Args:
        logger: Where to log (default: the ``conveyor.error_handling`` logger).
        replacement_value: The result that stands in for each failed call; the
            output rule applies, so ``None`` (the default) drops the item.
    """

    def __init__(self, logger: logging.Logger | None = None, replacement_value: Any = None) -> None:
        self.logger = logger if logger is not None else logging.getLogger(__name__)
        self.replacement_value = replacement_value

    async def handle_error(
        self, error: Exception, item: Any, task_name: str, attempt: int
    ) -> tuple[bool, Any]:
        # Where it happened, for filtering a service's logs by run (see _logs).
        fields = log_fields(task_name)
        self.logger.error(
            "Error in %s (attempt %d): %s" + where(fields).replace("%", "%%"),
            task_name,
            attempt,
            error,
            extra=fields,
        )
        return True, self.replacement_value
