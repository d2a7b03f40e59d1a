"""The `cpu` workload through pypeln's ``pl.process`` (run in its own venv).

Prints one JSON line: {"impl": "pypeln", "cpu_s": ..., "trivial_items_per_s": ...}.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pypeln as pl
from cpu_work import burn, tag, trivial


def run(func, items, workers):  # type: ignore[no-untyped-def]
    stage = pl.process.map(func, items, workers=workers, maxsize=4 * workers)
    stage = pl.process.map(tag, stage, workers=1, maxsize=4 * workers)
    return list(pl.process.ordered(stage))


def main() -> None:
    n, trivial_n, workers = (int(arg) for arg in sys.argv[1:4])
    run(trivial, range(100), workers)  # warm-up
    started = time.perf_counter()
    out = run(burn, range(n), workers)
    cpu_s = time.perf_counter() - started
    assert out == [burn(x) + 1 for x in range(n)], "WRONG"
    started = time.perf_counter()
    out = run(trivial, range(trivial_n), workers)
    trivial_s = time.perf_counter() - started
    assert out == [x + 1 for x in range(trivial_n)], "WRONG"
    print(
        json.dumps({"impl": "pypeln", "cpu_s": cpu_s, "trivial_items_per_s": trivial_n / trivial_s})
    )


if __name__ == "__main__":
    main()
