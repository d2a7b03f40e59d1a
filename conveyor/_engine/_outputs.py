"""The output rule: what one call's return value becomes downstream.

``None`` drops the item; a ``list`` is flattened; a generator or async
generator is drained, each value one item; anything else (``tuple``,
``dict``, ``str`` included) is a single item. Single and batch tasks share it.

The rule is decided once per result *type* and remembered, so the hot path
costs one dictionary lookup.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Generator
from types import AsyncGeneratorType, CoroutineType, GeneratorType
from typing import Any, Final

from ._envelope import EMPTY, entry_from_list

__all__ = [
    "AWAIT",
    "DRAIN",
    "ITERATE",
    "LIST",
    "NONE",
    "SCALAR",
    "drain",
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


def entry_of(result: Any) -> Any:
    """The entry for a finished call's return value (not for awaitables or async generators)."""
    kind = kind_of(result)
    if kind == SCALAR:
        return result
    if kind == NONE:
        return EMPTY
    if kind == LIST:
        return entry_from_list(result)
    if kind == ITERATE:
        return entry_from_list(list(result))
    raise AssertionError(f"entry_of() needs a finished result, got {result!r}")


async def drain(agen: AsyncIterator[Any]) -> Any:
    """The entry for an async generator's values, closing it afterwards."""
    items: list[Any] = []
    try:
        async for item in agen:
            items.append(item)
    finally:
        aclose = getattr(agen, "aclose", None)
        if aclose is not None:
            await aclose()
    return entry_from_list(items)


async def settle_result(result: Any) -> Any:
    """The entry for any return value: awaits awaitables, drains async generators."""
    while True:
        kind = kind_of(result)
        if kind == AWAIT:
            result = await result
        elif kind == DRAIN:
            return await drain(result)
        else:
            return entry_of(result)
