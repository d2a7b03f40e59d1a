"""A live progress display of pipeline runs, built on conveyor's instrument hooks.

``pipeline.with_instruments(Progress())`` shows, while a run goes, one line
per stage (items in and out, rate, calls in flight, failures) under an
overall bar with an ETA when the input's length is known (``len(data)``, or
``Progress(total=...)``). Needs rich: ``pip install 'conveyor[progress]'``.

Why rich and not tqdm: a run has several stages to show at once, and rich
renders a whole table as one live region (tqdm is one bar per object, and
stacked tqdm bars break in notebooks and logs); rich finds out by itself
whether it writes to a terminal, a Jupyter notebook (a widget) or a plain
file or pipe, where it writes no control codes at all; and it can be driven
by hand (``auto_refresh=False``), so no thread of its own runs beside the
event loop.

How it stays cheap: the display uses only run-level hooks. It reads
``run.statistics()`` from a task of the run (the ``monitor`` hook) at most
``refresh_per_second`` times a second, and defines no per-call hook, so every
stage keeps its fast path; the only cost is the refresh itself.
"""

from __future__ import annotations

import sys
from typing import IO, TYPE_CHECKING

import anyio

from ..instrumentation import Instrument, RunInfo
from ._optional import require

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live

    from ..statistics import RunStatistics

__all__ = ["Progress"]


class Progress(Instrument):
    """Show live progress of every run it is attached to.

    Each run's title says its state: ``running``, then how it ended
    (``RunInfo.outcome``): ``done``, ``stopped`` (the consumer ended it early:
    ``break``, ``first()``, ``stop_reading()``), ``failed`` or ``cancelled``.

    Args:
        total (int | None): the number of input items, when ``len(data)`` cannot
            tell (an iterator or async generator). Used for the bar and the ETA.
        file (IO[str] | None): where to write; default ``sys.stderr``. A file
            that is not a terminal gets no control codes: a plain status line
            every ``log_interval`` seconds and the final table at the end.
        console (rich.console.Console | None): a rich console to use instead of
            ``file`` (for its options: width, Jupyter, recording).
        refresh_per_second (float): the most redraws per second (> 0).
        log_interval (float): seconds between status lines when not a terminal (> 0).
        transient (bool): in a terminal, clear the display when the run ends.

    Raises:
        ImportError: rich is not installed (``pip install 'conveyor[progress]'``).
        TypeError / ValueError: an argument of the wrong type or out of range.
    """

    def __init__(
        self,
        *,
        total: int | None = None,
        file: IO[str] | None = None,
        console: Console | None = None,
        refresh_per_second: float = 4.0,
        log_interval: float = 10.0,
        transient: bool = False,
    ) -> None:
        require("rich", "progress")
        from rich.console import Console

        if total is not None and (isinstance(total, bool) or not isinstance(total, int)):
            raise TypeError(f"total must be an int or None, got {total!r}")
        if total is not None and total < 0:
            raise ValueError(f"total must be >= 0, got {total!r}")
        for name, value in (
            ("refresh_per_second", refresh_per_second),
            ("log_interval", log_interval),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number, got {value!r}")
            if value <= 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        if console is not None and file is not None:
            raise TypeError("pass either file or console, not both")
        self.total = total
        self.console: Console = (
            console
            if console is not None
            else Console(file=file if file is not None else sys.stderr)
        )
        self.interval = 1.0 / refresh_per_second
        self.log_interval = float(log_interval)
        self.transient = transient
        self._live: Live | None = None
        self._runs: dict[str, RunInfo] = {}  # the runs on display, by id

    # -- hooks ----------------------------------------------------------------

    def run_started(self, run: RunInfo) -> None:
        self._runs[run.run_id] = run
        if self._live is None and self._interactive:
            from rich.live import Live

            # Driven by hand from the run's monitor task: no refresh thread.
            self._live = Live(
                self._render(),
                console=self.console,
                auto_refresh=False,
                transient=self.transient,
            )
            self._live.start()

    async def monitor(self, run: RunInfo) -> None:
        """Redraw at a bounded rate, from a task of the run, until it ends."""
        if self._interactive:
            while True:
                await anyio.sleep(self.interval)
                self._refresh()
        else:
            while True:
                await anyio.sleep(self.log_interval)
                # One line per status, however long: a log is read line by line.
                self.console.print(
                    self.status_line(run, run.statistics()), highlight=False, soft_wrap=True
                )

    def run_finished(self, run: RunInfo) -> None:
        live = self._live
        if live is None:  # not a terminal: the final table, once
            self._runs.pop(run.run_id, None)
            self.console.print(self.table(run, run.statistics()), highlight=False)
            return
        if len(self._runs) == 1:
            # The last run: its final state is drawn once, by stop().
            live.update(self._render(), refresh=False)
            live.stop()
            self._live = None
            self._runs.clear()
            return
        # Other runs stay live: this one's final table goes above them.
        self._runs.pop(run.run_id, None)
        if not self.transient:
            live.console.print(self.table(run, run.statistics()), highlight=False)
        self._refresh()

    # -- rendering ------------------------------------------------------------

    @property
    def _interactive(self) -> bool:
        return bool(self.console.is_terminal or self.console.is_jupyter)

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render(), refresh=True)

    def _render(self) -> RenderableType:
        from rich.console import Group

        return Group(*(self.table(run, run.statistics()) for run in self._runs.values()))

    def _total(self, run: RunInfo) -> int | None:
        return self.total if self.total is not None else run.total

    def status_line(self, run: RunInfo, statistics: RunStatistics) -> str:
        """One line of plain text: the run's overall progress (for logs)."""
        done = statistics.items_read - statistics.items_in_flight
        total = self._total(run)
        elapsed = _elapsed(run, statistics)
        rate = done / elapsed if elapsed > 0 else 0.0
        parts = [f"conveyor run {run.run_id[:8]}"]
        if total:
            parts.append(f"{done}/{total} items ({100 * done / total:.0f}%)")
            parts.append(f"ETA {_eta(total - done, rate)}")
        else:
            parts.append(f"{done} items")
        parts.append(f"{rate:,.0f} items/s")
        parts.append(f"elapsed {_duration(elapsed)}")
        if run.outcome is not None:
            parts.append(run.outcome)
        return ", ".join(parts)

    def table(self, run: RunInfo, statistics: RunStatistics) -> RenderableType:
        """The run's display: the overall bar, then one row per stage."""
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        done = statistics.items_read - statistics.items_in_flight
        total = self._total(run)
        elapsed = _elapsed(run, statistics)
        rate = done / elapsed if elapsed > 0 else 0.0
        state = run.outcome or "running"  # done, stopped, failed or cancelled at the end
        title = f"conveyor run {run.run_id[:8]}: {state}, elapsed {_duration(elapsed)}"
        bar = Table.grid(padding=(0, 2))
        for _ in range(4):
            bar.add_column(no_wrap=True)
        bar.add_row(
            ProgressBar(total=float(total) if total else None, completed=float(done), width=24),
            f"{done:,}/{total:,} ({100 * done / total:.0f}%)" if total else f"{done:,} items",
            f"{rate:,.0f} items/s",
            f"ETA {_eta(total - done, rate)}" if total else "",
        )
        stages = Table(box=None, padding=(0, 1), show_edge=False, header_style="bold")
        for column in ("stage", "in", "out", "rate/s", "in flight", "failed"):
            stages.add_column(column, justify="left" if column == "stage" else "right")
        rows = statistics.stages
        for index, stage in enumerate(rows):
            out = (
                rows[index + 1].items_received
                if index + 1 < len(rows)
                else statistics.results_released
            )
            stages.add_row(
                stage.name,
                f"{stage.items_received:,}",
                f"{out:,}",
                f"{stage.items_per_second:,.0f}",
                f"{stage.calls_waiting:,}",
                f"{stage.calls_failed - stage.calls_retried:,}",
            )
        return Group(title, bar, stages)


def _elapsed(run: RunInfo, statistics: RunStatistics) -> float:
    if run.finished_at is not None:
        return run.finished_at - run.started_at
    return statistics.elapsed


def _eta(left: int, rate: float) -> str:
    if left <= 0:
        return "0:00:00"
    if rate <= 0:
        return "?"
    return _duration(left / rate)


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
