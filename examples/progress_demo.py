"""A live progress display of a three-stage pipeline (needs ``conveyor[progress]``).

Fetching is slow and concurrent, parsing drops a few bad records, saving
works in batches. Watch which stage holds the run back, and the ETA.

    python examples/progress_demo.py                  # live, in the terminal
    python examples/progress_demo.py --trio           # the same on trio
    python examples/progress_demo.py --capture FILE   # frames as plain text, to FILE
"""

from __future__ import annotations

import io
import random
import sys

import anyio
from rich.console import Console

from conveyor import RunInfo, batch_task, single_task
from conveyor.integrations.progress import Progress

ITEMS = 5000


@single_task(concurrency_limit=50)
async def fetch(n: int) -> int:
    await anyio.sleep(random.uniform(0.02, 0.1))  # pretend I/O
    return n


@single_task(on_error="skip_item")
def parse(n: int) -> int:
    if n % 97 == 13:
        raise ValueError(f"bad record {n}")
    return n


@batch_task(max_size=100)
async def save(batch: list[int]) -> int:
    await anyio.sleep(0.02)
    return len(batch)


class Frames(Progress):
    """Progress that also keeps a plain-text frame every second (for --capture)."""

    def __init__(self) -> None:
        super().__init__(console=Console(file=io.StringIO(), force_terminal=True, width=90))
        self.frames: list[str] = []

    async def monitor(self, run: RunInfo) -> None:
        while True:
            await anyio.sleep(1)
            self.frames.append(self._plain(run))

    def run_finished(self, run: RunInfo) -> None:
        super().run_finished(run)
        self.frames.append(self._plain(run))

    def _plain(self, run: RunInfo) -> str:
        console = Console(file=io.StringIO(), width=90, color_system=None)
        console.print(self.table(run, run.statistics()))
        return console.file.getvalue()  # type: ignore[attr-defined,no-any-return]


async def main(capture: bool = False) -> str:
    """Run the pipeline; with ``capture``, return its frames as plain text."""
    random.seed(1)
    progress = Frames() if capture else Progress()
    pipeline = (fetch | parse | save).with_instruments(progress)
    saved = sum(await pipeline(range(ITEMS)).collect())
    text = f"# python examples/progress_demo.py: {saved} of {ITEMS} records saved\n"
    if isinstance(progress, Frames):
        for second, frame in enumerate(progress.frames, start=1):
            label = "final" if second == len(progress.frames) else f"after {second} s"
            text += f"\n# {label}\n{frame}"
    return text


if __name__ == "__main__":
    args = sys.argv[1:]
    file = args[args.index("--capture") + 1] if "--capture" in args else None
    frames = anyio.run(main, file is not None, backend="trio" if "--trio" in args else "asyncio")
    if file is not None:
        with open(file, "w", encoding="utf-8") as out:
            out.write(frames)
