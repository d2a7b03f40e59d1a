"""The output rule: what one call's return value becomes downstream.

``None`` drops the value; a ``list`` of several values, a generator or an
async generator *expands* the value into its elements, which are streamed
one by one (see ``_expand``); a one-element list is that element; anything
else (``tuple``, ``dict``, ``str`` included) is a single value. Single and
batch tasks share it.

The rule is decided once per result *type* and remembered, so the hot path
costs one dictionary lookup.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Generator, Iterator
from contextvars import Context, copy_context
from types import AsyncGeneratorType, CoroutineType, GeneratorType
from typing import Any, Final, TypeAlias, Union

from ._envelope import EMPTY

__all__ = [
    "AWAIT",
    "DRAIN",
    "ITERATE",
    "LIST",
    "NONE",
    "SCALAR",
    "Expansion",
    "entry_of",
    "kind_of",
    "settle_result",
]

SCALAR: Final = 0
NONE: Final = 1
LIST: Final = 2
ITERATE: Final = 3  # a sync generator
DRAIN: Final = 4  # an async generator
AWAIT: Final = 5  # a coroutine or other awaitable: its result is the return value

_kinds: dict[type, int] = {
    int: SCALAR,
    float: SCALAR,
    str: SCALAR,
    bytes: SCALAR,
    bool: SCALAR,
    tuple: SCALAR,
    dict: SCALAR,
    type(None): NONE,
    list: LIST,
    GeneratorType: ITERATE,
    AsyncGeneratorType: DRAIN,
    CoroutineType: AWAIT,
}

#: What an expansion's values come from.
Source: TypeAlias = Union[list[Any], Iterator[Any], AsyncIterator[Any]]  # noqa: UP007


class Expansion:
    """A call's result that expands into several values, to be streamed.

    ``value`` is the call's input (for retries and failure records),
    ``attempt`` the number of the attempt that produced ``source``, and
    ``context`` the call's own context, in which the generator runs.
    """

    __slots__ = ("attempt", "call", "context", "counted", "source", "value")

    def __init__(
        self, source: Source, value: Any, attempt: int = 1, context: Context | None = None
    ) -> None:
        self.source = source
        self.value = value
        self.attempt = attempt
        self.context = context if context is not None else copy_context()
        # On the policy path: the call is counted (and reported to the
        # instruments, ``call``) when the expansion ends, not when it starts.
        self.counted = False
        self.call: Any = None

    def __repr__(self) -> str:
        return f"Expansion({self.source!r})"


def kind_of(result: Any) -> int:
    """Which output rule applies to ``result`` (cached per type)."""
    kind = _kinds.get(type(result))
    if kind is None:
        kind = _kinds[type(result)] = _classify(result)
    return kind


def _classify(result: Any) -> int:
    if isinstance(result, list):
        return LIST
    if isinstance(result, Generator):
        return ITERATE
    if isinstance(result, AsyncGenerator):
        return DRAIN
    if isinstance(result, Awaitable):
        return AWAIT
    return SCALAR


def entry_of(result: Any, value: Any, attempt: int = 1, context: Context | None = None) -> Any:
    """The entry for a finished call's return value, or an :class:`Expansion`.

    ``value`` is the call's input. Not for awaitables.
    """
    kind = kind_of(result)
    if kind == SCALAR:
        return result
    if kind == NONE:
        return EMPTY
    if kind == LIST:
        if len(result) == 1:
            return result[0]
        if not result:
            return EMPTY
    assert kind != AWAIT, "entry_of() needs a finished result"
    return Expansion(result, value, attempt, context)


async def settle_result(
    result: Any, value: Any = None, attempt: int = 1, context: Context | None = None
) -> Any:
    """The entry for any return value (awaiting awaitables), or an :class:`Expansion`."""
    while kind_of(result) == AWAIT:
        result = await result
    return entry_of(result, value, attempt, context)
