"""The error boundary: what a run's consumer sees when it fails.

anyio task groups wrap what their tasks raise, even the consumer's own
exception, in exception groups. At the edge of a run we take apart *those*
groups, and only those: an exception group that a user's code raised is a
value like any other exception and arrives whole. We tell the two apart
without guessing from messages or types: every exception that user code
raises during a run reaches the run through conveyor's hands (a call, the
source, a generator), which attach conveyor's note to it (see ``_notes``), and
the consumer's own exception is known by identity. A group with neither mark
was made by the task-group machinery.

What the run raises, from what its groups carry:

- a ``KeyboardInterrupt`` or ``SystemExit`` wins;
- the consumer's own exception comes back unchanged (the same object);
- cancellations are dropped, unless nothing else is left (then cancellation
  propagates as itself);
- exactly one real error is raised as itself (the same object, with its note);
- several independent errors are gathered in one group of conveyor's.

Worker tasks never raise a ``KeyboardInterrupt`` or ``SystemExit`` bare: on
asyncio an exception of those types escaping a task's coroutine is raised out
of the event loop at once, while the run's other tasks are still running
(``asyncio.run()`` then cancels them during its shutdown, re-raises the
consumer's copy in the middle of it, and prints tracebacks and "never
awaited" warnings). :func:`guarded` carries it to the boundary inside a group,
and the consumer's task raises it once.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterator
from typing import Any, NoReturn

import anyio

from ._backend import current_loop
from ._notes import has_note, noted_original

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup, ExceptionGroup

__all__ = ["GATHERED", "guarded", "left_behind", "reraise", "settle", "settle_and_report", "values"]

#: The message of the group in which conveyor gathers independent failures.
GATHERED = "several failures in a conveyor run"
#: The message of the group that carries an exit exception out of a worker task.
_CARRIED = "conveyor: carried out of a worker task"


def values(exc: BaseException, own: BaseException | None = None) -> Iterator[BaseException]:
    """The exceptions ``exc`` stands for, machinery groups taken apart, in order.

    A group is a value (not taken apart) when it is ``own`` or carries
    conveyor's note; every other exception group is the machinery's. A copy of
    a value (trio's cancel scopes copy the groups they filter) stands for the
    original, which is what comes out.
    """
    if not isinstance(exc, BaseExceptionGroup):
        yield exc
        return
    if own is not None and (exc is own or _same_leaves(exc, own)):
        yield own
        return
    if has_note(exc):
        yield noted_original(exc) or exc
        return
    for inner in exc.exceptions:
        yield from values(inner, own)


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def _same_leaves(group: BaseExceptionGroup[Any], own: BaseException) -> bool:
    """True if ``group`` is a copy of ``own``: the very same exceptions inside."""
    if not isinstance(own, BaseExceptionGroup) or group.message != own.message:
        return False
    mine, theirs = list(_leaves(own)), list(_leaves(group))
    return len(mine) == len(theirs) and all(a is b for a, b in zip(mine, theirs, strict=True))


def settle(exc: BaseException, own: BaseException | None = None) -> BaseException:
    """The one exception to raise for ``exc``, raised out of a run.

    ``own`` is the exception the consumer's code raised, if any.
    """
    if not isinstance(exc, BaseExceptionGroup) or exc is own:
        return exc
    found: list[BaseException] = []
    for value in values(exc, own):
        if all(value is not seen for seen in found):  # one exception, one arrival
            found.append(value)
    for value in found:
        if isinstance(value, (KeyboardInterrupt, SystemExit)):
            return value
    cancelled = anyio.get_cancelled_exc_class()
    if own is not None and not isinstance(own, cancelled) and any(v is own for v in found):
        return own
    real = [value for value in found if not isinstance(value, cancelled)]
    if not real:
        return found[0] if found else exc
    if len(real) == 1:
        return real[0]
    if all(isinstance(value, Exception) for value in real):
        return ExceptionGroup(GATHERED, real)  # type: ignore[type-var]
    return BaseExceptionGroup(GATHERED, real)


_LEFT_BEHIND = (
    "conveyor: a run raised this while {what} was on its way out of the run, so it "
    "could not be raised to you"
)


def settle_and_report(exc: BaseException, own: BaseException | None = None) -> BaseException:
    """:func:`settle`, and every other error ``exc`` carries goes to the event loop.

    When the consumer's own exception (or a ``KeyboardInterrupt`` or
    ``SystemExit``) is what comes out, an error of the user's that the run
    raised meanwhile (a generator's ``finally`` while it was closed, say)
    cannot come out with it: it is handed to the event loop (see
    ``Loop.report``), so that it reaches the program once, never nowhere.
    """
    problem = settle(exc, own)
    left = left_behind(exc, problem, own)
    if left:
        loop = current_loop()
        what = "your own exception" if problem is own else f"a {type(problem).__name__}"
        for error in left:
            loop.report(_LEFT_BEHIND.format(what=what), error)
    return problem


def left_behind(
    exc: BaseException, problem: BaseException, own: BaseException | None = None
) -> list[BaseException]:
    """The real errors in ``exc`` that ``problem`` (what :func:`settle` chose) leaves out."""
    if problem is exc or not isinstance(exc, BaseExceptionGroup):
        return []
    if isinstance(problem, BaseExceptionGroup) and problem.message == GATHERED:
        return []  # it holds every real error
    cancelled = anyio.get_cancelled_exc_class()
    left: list[BaseException] = []
    for value in values(exc, own):
        if value is problem or value is own or isinstance(value, cancelled):
            continue
        if all(value is not seen for seen in left):
            left.append(value)
    return left


def reraise(exc: BaseException) -> NoReturn:
    """``raise exc``, leaving its ``__context__`` as it was.

    The boundary raises a task's exception while it handles another one (the
    consumer's cancellation, the end of iteration); a plain ``raise`` would
    make that one the user's exception's context, which would then print as
    "During handling of the above exception (conveyor's), another exception
    occurred".
    """
    context = exc.__context__
    try:
        raise exc
    finally:
        exc.__context__ = context


def guarded(fn: Callable[..., Awaitable[Any]], *args: Any) -> Coroutine[Any, Any, None]:
    """The body of a worker task of a run: ``tg.start_soon(guarded, fn, *args)``.

    It awaits ``fn(*args)``, and a ``KeyboardInterrupt`` or ``SystemExit``
    leaves inside a group (which :func:`settle` takes apart) instead of bare:
    see the module docstring.

    ``fn(*args)`` is called only once the task runs. anyio (4.14 and later)
    makes the coroutine of a task when the task is started, and asyncio may
    cancel a task before its first step (``asyncio.run()`` does, on its way
    out, to every task left): a coroutine made early would then never be
    awaited, and Python would warn about it. Here nothing is made until then.
    """
    return _Task(fn, args)


async def _carry_exits(fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
    try:
        await fn(*args)
    except (KeyboardInterrupt, SystemExit) as exc:
        raise BaseExceptionGroup(_CARRIED, [exc]) from None


class _Task(Coroutine[Any, Any, None]):
    """A coroutine that makes its real one (``_carry_exits``) when first run.

    anyio awaits it (``__await__``: the real coroutine's own iterator, so the
    task then runs at full speed); older anyio versions and the backends may
    also drive it with ``send``/``throw``, which make the real one as late.
    """

    __slots__ = ("_args", "_coro", "_fn")

    def __init__(self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
        self._fn = fn
        self._args = args
        self._coro: Coroutine[Any, Any, None] | None = None

    def _real(self) -> Coroutine[Any, Any, None]:
        coro = self._coro
        if coro is None:
            coro = self._coro = _carry_exits(self._fn, self._args)
        return coro

    def __await__(self) -> Generator[Any, None, None]:
        return self._real().__await__()

    def send(self, value: Any) -> Any:
        return self._real().send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        if self._coro is None:  # never started: there is nothing to unwind
            raise typ if val is None else val
        return self._coro.throw(typ, val, tb)

    def close(self) -> None:
        if self._coro is not None:
            self._coro.close()
