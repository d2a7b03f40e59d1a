"""The streaming guide's 8-task timeline, replayed: ordered vs as-completed.

Eight items take 0.1, 0.2, 0.3, 0.4, 0.5, 2.0, 0.7 and 0.8 seconds. A batch
approach would show nothing until 2.0 s; conveyor shows the first five results
as soon as each is ready. Ordered mode then holds 7 and 8 back until the slow
sixth item is done; as-completed mode releases every result the moment it is
ready.

    python examples/timeline_demo.py            # asyncio
    python examples/timeline_demo.py --trio     # the same on trio
"""

from __future__ import annotations

import sys

import anyio

from conveyor import single_task

DELAYS = [0.1, 0.2, 0.3, 0.4, 0.5, 2.0, 0.7, 0.8]


@single_task
async def process_item(item: tuple[int, float]) -> str:
    number, delay = item
    await anyio.sleep(delay)
    return f"result {number} (took {delay:.1f}s)"


async def show(title: str, mode: str) -> None:
    items = list(enumerate(DELAYS, start=1))
    pipeline = process_item.with_execution_mode(mode)  # type: ignore[arg-type]
    print(f"\n{title}")
    start = anyio.current_time()
    async for result in pipeline(items):
        print(f"  {anyio.current_time() - start:4.1f}s  {result}")


async def main() -> None:
    print("8 items taking", ", ".join(f"{d}s" for d in DELAYS))
    print("A batch approach would print everything at once, at 2.0s.")
    await show(
        "Ordered streaming (default): input order, each result as early as order allows", "ordered"
    )
    await show("As-completed streaming: every result the moment it is ready", "as_completed")


if __name__ == "__main__":
    anyio.run(main, backend="trio" if "--trio" in sys.argv[1:] else "asyncio")
