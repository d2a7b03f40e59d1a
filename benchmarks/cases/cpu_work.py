"""The `cpu` workload's functions: importable by worker processes, nothing else.

``burn`` is pure Python (no C call that releases the GIL), about 2 ms an
item on the reference machine; ``trivial`` measures per-call overhead.
"""

from __future__ import annotations

ROUNDS = 8000


def burn(n: int) -> int:
    total = n
    for i in range(ROUNDS):
        total = (total * 31 + i) % 1000003
    return total


def trivial(n: int) -> int:
    return n


def tag(value: int) -> int:
    """The trivial second stage."""
    return value + 1
