"""The output rule: what one call's return value becomes downstream.

``None`` drops the item; a ``list`` is flattened; a generator or async
generator is drained, each value one item; anything else (``tuple``,
``dict``, ``str`` included) is a single item. Single and batch tasks share it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Coroutine, Generator
from types import AsyncGeneratorType, GeneratorType
from typing import Any

__all__ = ["outputs_of"]


def outputs_of(result: Any) -> list[Any] | Coroutine[Any, Any, list[Any]]:
    """The items ``result`` stands for, or a coroutine that drains them.

    A returned list is used as is, not copied: conveyor never mutates it.
    """
    if result is None:
        return []
    if type(result) is list:
        return result
    if isinstance(result, list):
        return list(result)
    if isinstance(result, (GeneratorType, Generator)):
        return list(result)
    if isinstance(result, (AsyncGeneratorType, AsyncGenerator)):
        return _drain(result)
    return [result]


async def _drain(agen: AsyncIterator[Any]) -> list[Any]:
    items: list[Any] = []
    try:
        async for item in agen:
            items.append(item)
    finally:
        aclose = getattr(agen, "aclose", None)
        if aclose is not None:
            await aclose()
    return items
