"""A live progress display of a three-stage pipeline (needs ``conveyor[progress]``).

Fetching is slow and concurrent, parsing drops a few bad records, saving
works in batches. Watch which stage holds the run back, and the ETA.

With ``--svg FILE`` the demo also records the display halfway through the run
and at its end, with rich's own recording (``Console(record=True)``), and
saves both as an SVG picture: ``docs/progress.svg`` is made this way.

    python examples/progress_demo.py                       # live, in the terminal
    python examples/progress_demo.py --trio                # the same on trio
    python examples/progress_demo.py --svg docs/progress.svg
"""

from __future__ import annotations

import argparse
import io
import random
import sys
from pathlib import Path

import anyio
from rich.console import Console

from conveyor import Instrument, RunInfo, batch_task, single_task
from conveyor.integrations.progress import Progress

ITEMS = 5000
#: The recorded terminal's width, in characters (the display fits in 80).
WIDTH = 80
TITLE = "python examples/progress_demo.py"


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


class Snapshots(Instrument):
    """Records what ``progress`` shows, halfway through the run and at its end.

    Another instrument of the same run: it draws with the display's own
    ``table()``, into a recording console, so the picture is the display.
    """

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.console = Console(
            record=True,
            file=io.StringIO(),  # recorded, not shown
            width=WIDTH,
            force_terminal=True,
            color_system="truecolor",
        )

    def snapshot(self, run: RunInfo, caption: str) -> None:
        self.console.print(caption, style="dim italic", highlight=False)
        self.console.print(self.progress.table(run, run.statistics()))

    async def monitor(self, run: RunInfo) -> None:
        half = (run.total or 0) / 2
        while True:
            await anyio.sleep(0.05)
            statistics = run.statistics()
            if statistics.items_read - statistics.items_in_flight >= half:
                self.snapshot(run, "# halfway through")
                self.console.print()
                return

    def run_finished(self, run: RunInfo) -> None:
        self.snapshot(run, "# at the end")

    def save_svg(self, path: Path) -> None:
        self.console.save_svg(str(path), title=TITLE, unique_id="conveyor-progress")


async def main(svg: Path | None = None, items: int = ITEMS) -> int:
    """Run the pipeline on ``items`` records with a live display; with ``svg``,
    save a picture of the display there.

    Returns the number of records saved.
    """
    random.seed(1)
    progress = Progress()  # on stderr: live in a terminal, plain lines in a log
    snapshots = Snapshots(progress)
    pipeline = (fetch | parse | save).with_instruments(progress)
    if svg is not None:
        pipeline = pipeline.with_instruments(snapshots)
    saved = sum(await pipeline(range(items)).collect())
    print(f"{saved} of {items} records saved")
    if svg is not None:
        snapshots.save_svg(svg)
        print(f"A picture of the display: {svg}")
    return saved


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trio", action="store_true", help="run on trio instead of asyncio")
    parser.add_argument("--svg", type=Path, help="save a picture of the display to this file")
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args(sys.argv[1:])
    anyio.run(main, args.svg, backend="trio" if args.trio else "asyncio")
