"""Draw ``docs/how-it-works.png``: one run of a pipeline, feeder to consumer.

Run ``python docs/pictures/draw_run.py`` (needs matplotlib: ``pip install -e '.[plot]'``)
after changing the picture, and commit the PNG with it.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

OUT = Path(__file__).resolve().parent.parent / "how-it-works.png"

BLUE, GREEN, ORANGE, GREY = "#dbe9f6", "#dff0d8", "#fbe5cc", "#f2f2f2"


def box(ax: plt.Axes, x: float, y: float, w: float, h: float, title: str, body: str, color: str):
    ax.add_patch(
        FancyBboxPatch(
            (x, y),
            w,
            h,
            boxstyle="round,pad=0.02,rounding_size=0.08",
            facecolor=color,
            edgecolor="#333333",
            linewidth=1.2,
        )
    )
    ax.text(x + w / 2, y + h - 0.17, title, ha="center", va="top", fontsize=10.5, fontweight="bold")
    ax.text(x + w / 2, y + h - 0.48, body, ha="center", va="top", fontsize=8.3, linespacing=1.35)


def arrow(
    ax: plt.Axes,
    start: tuple[float, float],
    end: tuple[float, float],
    label: str = "",
    style: str = "-|>",
    dashed: bool = False,
    rad: float = 0.0,
    dy: float = 0.12,
) -> None:
    ax.add_patch(
        FancyArrowPatch(
            start,
            end,
            arrowstyle=style,
            mutation_scale=14,
            linewidth=1.3,
            color="#333333",
            linestyle="--" if dashed else "-",
            connectionstyle=f"arc3,rad={rad}",
        )
    )
    if label:
        ax.text(
            (start[0] + end[0]) / 2,
            (start[1] + end[1]) / 2 + dy,
            label,
            ha="center",
            va="bottom",
            fontsize=7.5,
            color="#444444",
        )


def main() -> None:
    fig, ax = plt.subplots(figsize=(13, 5.6))
    ax.set_xlim(0, 13)
    ax.set_ylim(0, 5.6)
    ax.axis("off")

    # The run scope: one AnyIO task group holding the feeder and every stage.
    ax.add_patch(
        FancyBboxPatch(
            (1.75, 0.95),
            9.0,
            3.2,
            boxstyle="round,pad=0.02,rounding_size=0.12",
            facecolor="none",
            edgecolor="#555555",
            linewidth=1.2,
            linestyle="--",
        )
    )
    ax.text(
        1.9,
        4.07,
        "one run = one AnyIO task group (RunScope): no worker outlives it",
        fontsize=8.5,
        va="top",
        style="italic",
        color="#444444",
    )

    box(ax, 0.1, 1.6, 1.35, 1.8, "input", "list, iterator,\nasync iterable\n(read lazily)", GREY)
    box(
        ax,
        2.0,
        1.4,
        1.9,
        2.2,
        "feeder",
        "numbers items\n(sequence numbers),\nchunks of up to 128;\nadmits an item only\n"
        "while the window\nhas room",
        BLUE,
    )
    box(
        ax,
        4.4,
        1.4,
        2.0,
        2.2,
        "single stage",
        "one call per item,\nmany at once, up to\nconcurrency_limit;\ncheap calls run in\n"
        "place, calls that\nawait get a worker",
        GREEN,
    )
    box(
        ax,
        6.9,
        1.4,
        1.6,
        2.2,
        "batch stage",
        "lists of up to\nmax_size items,\none call at a time\n(a reorder step in\nfront, ordered)",
        GREEN,
    )
    box(
        ax,
        9.0,
        1.4,
        1.55,
        2.2,
        "reorder",
        "ordered mode:\nholds early results\nuntil all before\nthem are out\n"
        "(as-completed:\nreleases at once)",
        ORANGE,
    )
    box(ax, 11.2, 1.6, 1.7, 1.8, "your loop", "async for,\ncollect(), first(),\nopen()", GREY)

    arrow(ax, (1.45, 2.5), (2.0, 2.5))
    arrow(ax, (3.9, 2.5), (4.4, 2.5))
    arrow(ax, (6.4, 2.5), (6.9, 2.5))
    arrow(ax, (8.5, 2.5), (9.0, 2.5))
    arrow(ax, (10.55, 2.5), (11.2, 2.5))
    ax.text(
        6.25,
        1.1,
        "stages are joined by bounded AnyIO memory object streams",
        ha="center",
        fontsize=8,
        color="#444444",
    )

    # The admission window: releasing a result frees room, so the feeder reads on.
    arrow(ax, (12.05, 1.6), (2.95, 1.4), style="-|>", dashed=True, rad=-0.16)
    ax.text(
        7.0,
        0.42,
        "admission window: at most `window` items between feeder and your loop; "
        "each released result frees a place (backpressure)",
        ha="center",
        fontsize=8.3,
        color="#444444",
    )

    # The host task: plain `async for` runs the scope in a task of its own.
    box(
        ax,
        3.6,
        4.4,
        6.4,
        1.1,
        "host task (plain async for only)",
        "runs the RunScope in a task beside your loop, which reads the results;\n"
        "a break, an error or a dropped iterator cancels it (open() needs no host)",
        BLUE,
    )
    arrow(ax, (6.8, 4.4), (6.8, 4.15), style="-|>")

    fig.savefig(OUT, dpi=110, bbox_inches="tight")
    print(OUT)


if __name__ == "__main__":
    main()
