"""The error boundary: what a run's consumer sees when it fails.

anyio task groups wrap every exception, even the consumer's own, in an
exception group. At the edge of a run we take the group apart: cancellations
are dropped (unless nothing else is left, then cancellation propagates as
itself); a ``KeyboardInterrupt`` or ``SystemExit`` wins; the consumer's own
exception comes back unchanged; exactly one real error is re-raised as
itself; several independent ones stay a group.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import anyio

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup, ExceptionGroup

__all__ = ["leaves", "settle"]


def leaves(exc: BaseException) -> Iterator[BaseException]:
    """Every exception inside ``exc``, groups flattened, in order."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from leaves(inner)
    else:
        yield exc


def settle(exc: BaseException, own: BaseException | None = None) -> BaseException:
    """The one exception to raise for ``exc``, raised out of a run.

    ``own`` is the exception the consumer's code raised, if any.
    """
    if not isinstance(exc, BaseExceptionGroup):
        return exc
    found = list(leaves(exc))
    for leaf in found:
        if isinstance(leaf, (KeyboardInterrupt, SystemExit)):
            return leaf
    cancelled = anyio.get_cancelled_exc_class()
    if own is not None and not isinstance(own, cancelled) and any(leaf is own for leaf in found):
        return own
    real = [leaf for leaf in found if not isinstance(leaf, cancelled)]
    if not real:
        return found[0] if found else exc
    if len(real) == 1:
        return real[0]
    if all(isinstance(leaf, Exception) for leaf in real):
        return ExceptionGroup("several failures in a conveyor run", real)  # type: ignore[type-var]
    return BaseExceptionGroup("several failures in a conveyor run", real)
