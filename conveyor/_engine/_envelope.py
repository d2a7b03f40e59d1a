"""What travels between stages: chunks of numbered entries.

A :class:`Chunk` carries the entries of consecutive input items, the first
numbered ``seq``. An *entry* is what one input item stands for at this point
of the pipeline: the plain value itself (the common case: no wrapper, no
allocation), or a :class:`Many` holding none (the item was dropped) or
several values (a call expanded it). The entry keeps its place even when it
is empty, so the ordered output can move past it.

Stages rewrite entries in place when every call of a chunk finishes at once,
and split a chunk into numbered pieces when a call has to wait.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

__all__ = ["EMPTY", "Chunk", "Many", "add_values", "entry_from_list", "values_of"]


class Many:
    """An entry of zero or several values; private, so never a user's value."""

    __slots__ = ("values",)

    def __init__(self, values: Sequence[Any]) -> None:
        self.values = values

    def __repr__(self) -> str:
        return f"Many({self.values!r})"


#: The entry of a dropped item.
EMPTY = Many(())


def entry_from_list(values: list[Any]) -> Any:
    """The entry for the values one item stands for."""
    if len(values) == 1:
        return values[0]
    return Many(values) if values else EMPTY


def values_of(entry: Any) -> Sequence[Any]:
    """The values an entry stands for."""
    return entry.values if type(entry) is Many else (entry,)


class Chunk:
    """Entries of input items ``seq``, ``seq + 1``, ...; ``weight`` window tokens.

    ``many`` is True when some entry may be a :class:`Many`, so that readers
    of plain chunks can skip the per-entry check. A chunk has one owner at a
    time, which may rewrite its entries in place.
    """

    __slots__ = ("entries", "many", "seq", "weight")

    def __init__(self, seq: int, entries: list[Any], weight: int, many: bool = False) -> None:
        self.seq = seq
        self.entries = entries
        self.weight = weight  # usually len(entries); 0 for extra pieces of a split entry
        self.many = many

    def __repr__(self) -> str:
        return f"Chunk(seq={self.seq}, entries={self.entries!r}, weight={self.weight})"


def add_values(target: list[Any] | deque[Any], chunk: Chunk) -> None:
    """Append the values of every entry of ``chunk`` to ``target``, in order."""
    if not chunk.many:
        target.extend(chunk.entries)
        return
    for entry in chunk.entries:
        if type(entry) is Many:
            target.extend(entry.values)
        else:
            target.append(entry)
