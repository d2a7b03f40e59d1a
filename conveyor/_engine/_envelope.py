"""Envelopes: what travels between stages.

One envelope carries the values that one input item stands for at this point
of the pipeline (none if it was dropped, several if a call expanded it),
under the input's sequence number, so that the ordered output can be rebuilt
and dropped items still let the reorder step move past their position.

Channels carry *lists* of envelopes (chunks): a stage that finishes many
calls at once hands them on in one channel operation.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Chunk", "Envelope"]


class Envelope:
    """``values`` for input number ``seq``; ``weight`` window tokens it holds.

    An envelope has one owner at a time (the stage working on it), which may
    update ``values`` in place instead of allocating a new envelope.
    """

    __slots__ = ("seq", "values", "weight")

    def __init__(self, seq: int, values: list[Any], weight: int = 1) -> None:
        self.seq = seq
        self.values = values
        self.weight = weight  # 1, or 0 for the extra pieces of a split envelope

    def __repr__(self) -> str:
        return f"Envelope(seq={self.seq}, values={self.values!r}, weight={self.weight})"


Chunk = list[Envelope]
