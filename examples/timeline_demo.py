"""The streaming guide's 8-task timeline, replayed: ordered vs as-completed.

Eight items take 0.1, 0.2, 0.3, 0.4, 0.5, 2.0, 0.7 and 0.8 seconds. A batch
approach would show nothing until 2.0 s; conveyor shows the first five results
as soon as each is ready. Ordered mode then holds 7 and 8 back until the slow
sixth item is done; as-completed mode releases every result the moment it is
ready.

With matplotlib installed (``pip install -e '.[plot]'``) the demo also draws
the two timelines as a PNG chart and prints its path; without it, it prints
only the text timeline.

    python examples/timeline_demo.py                  # asyncio
    python examples/timeline_demo.py --trio           # the same on trio
    python examples/timeline_demo.py --chart out.png  # where to write the chart
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import anyio

from conveyor import single_task

DELAYS = [0.1, 0.2, 0.3, 0.4, 0.5, 2.0, 0.7, 0.8]
DEFAULT_CHART = Path(tempfile.gettempdir()) / "conveyor-timeline.png"

# (item number, seconds from the start of the run until its result arrived)
Arrivals = list[tuple[int, float]]


@single_task
async def process_item(item: tuple[int, float]) -> tuple[int, str]:
    number, delay = item
    await anyio.sleep(delay)
    return number, f"result {number} (took {delay:.1f}s)"


async def show(title: str, mode: str) -> Arrivals:
    """Run the eight items in ``mode``, print each result as it arrives, return the arrivals."""
    items = list(enumerate(DELAYS, start=1))
    pipeline = process_item.with_execution_mode(mode)  # type: ignore[arg-type]
    print(f"\n{title}")
    arrivals: Arrivals = []
    start = anyio.current_time()
    async for number, result in pipeline(items):
        elapsed = anyio.current_time() - start
        arrivals.append((number, elapsed))
        print(f"  {elapsed:4.1f}s  {result}")
    return arrivals


def write_chart(ordered: Arrivals, as_completed: Arrivals, path: Path) -> Path | None:
    """Draw both timelines into a PNG at ``path``; ``None`` if matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")  # files only: no window, no display needed
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    panels = [("Ordered (default)", ordered, "#1f77b4"), ("As completed", as_completed, "#2ca02c")]
    for ax, (title, arrivals, color) in zip(axes, panels, strict=True):
        numbers = [number for number, _ in arrivals]
        ax.barh(
            numbers,
            [DELAYS[number - 1] for number in numbers],
            color="#dddddd",
            edgecolor="#999999",
            label="the item's work",
        )
        ax.scatter(
            [seconds for _, seconds in arrivals],
            numbers,
            color=color,
            zorder=3,
            s=45,
            label="result arrives",
        )
        ax.axvline(max(DELAYS), color="#d62728", linestyle="--", linewidth=1)
        ax.text(
            max(DELAYS) - 0.04,
            0.55,
            "a batch approach:\nevery result here",
            color="#d62728",
            ha="right",
            fontsize=8,
        )
        ax.set_title(title)
        ax.set_xlabel("seconds since the run started")
        ax.set_xlim(0, max(DELAYS) + 0.2)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_ylabel("item")
    axes[0].set_yticks(range(1, len(DELAYS) + 1))
    axes[0].invert_yaxis()
    axes[1].legend(loc="lower right", fontsize=8)
    fig.suptitle("When each of 8 results arrived (the streaming guide's timeline)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


async def main(chart: Path = DEFAULT_CHART) -> None:
    print("8 items taking", ", ".join(f"{d}s" for d in DELAYS))
    print("A batch approach would print everything at once, at 2.0s.")
    ordered = await show(
        "Ordered streaming (default): input order, each result as early as order allows", "ordered"
    )
    as_completed = await show(
        "As-completed streaming: every result the moment it is ready", "as_completed"
    )
    written = write_chart(ordered, as_completed, chart)
    if written is not None:
        print(f"\nChart of both timelines: {written}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trio", action="store_true", help="run on trio instead of asyncio")
    parser.add_argument(
        "--chart", type=Path, default=DEFAULT_CHART, help="where to write the PNG chart"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args(sys.argv[1:])
    anyio.run(main, args.chart, backend="trio" if args.trio else "asyncio")
