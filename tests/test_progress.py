"""The live progress display (conveyor.integrations.progress, on rich)."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator

import anyio
import anyio.lowlevel
import pytest
from rich.console import Console

from conveyor import batch_task, single_task
from conveyor.integrations.progress import Progress

from .conftest import virtual_clock

pytestmark = pytest.mark.anyio

CONTROL = re.compile(r"\x1b|\r")


@single_task(concurrency_limit=8)
async def fetch(x: int) -> int:
    await anyio.lowlevel.checkpoint()
    return x


@single_task(on_error="skip_item")
def parse(x: int) -> int:
    if x % 25 == 3:
        raise ValueError(x)
    return x


@batch_task(max_size=10)
def save(batch: list[int]) -> int:
    return len(batch)


async def test_a_log_file_gets_the_final_table_without_control_codes() -> None:
    log = io.StringIO()
    pipeline = (fetch | parse | save).with_instruments(Progress(file=log))
    assert sum(await pipeline(range(100)).collect()) == 96

    text = log.getvalue()
    assert not CONTROL.search(text)
    lines = text.splitlines()
    assert re.fullmatch(r"conveyor run \w{8}: done, elapsed 0:00:0\d", lines[0])
    assert re.match(r"━+\s+100/100 \(100%\)\s+[\d,]+ items/s\s+ETA 0:00:00", lines[1])
    rows = [line.split() for line in lines[2:]]
    assert rows[0] == ["stage", "in", "out", "rate/s", "in", "flight", "failed"]
    assert [(row[0], row[1], row[2], row[-2], row[-1]) for row in rows[1:]] == [
        ("fetch", "100", "100", "0", "0"),
        ("parse", "100", "100", "0", "4"),
        ("save", "100", "10", "0", "0"),
    ]


async def test_a_terminal_gets_a_live_display_ending_with_the_totals() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=100, record=True)
    pipeline = (fetch | save).with_instruments(Progress(console=console))
    await pipeline(range(50)).collect()

    assert "\x1b[" in console.file.getvalue()  # type: ignore[attr-defined]
    final = console.export_text().split("conveyor run ")[-1]
    assert "done" in final
    assert "50/50 (100%)" in final
    assert re.search(r"save\s+50\s+5\s", final)


async def test_the_total_hint_gives_an_iterator_input_its_bar() -> None:
    async def numbers() -> AsyncIterator[int]:
        for i in range(40):
            yield i

    log = io.StringIO()
    await fetch.with_instruments(Progress(file=log, total=40))(numbers()).collect()
    assert "40/40 (100%)" in log.getvalue()


async def test_without_a_length_the_display_counts_items() -> None:
    log = io.StringIO()
    await fetch.with_instruments(Progress(file=log))(iter(range(30))).collect()
    text = log.getvalue()
    assert "30 items" in text
    assert "ETA" not in text


@single_task(concurrency_limit=1)
async def one_per_second(x: int) -> int:
    await anyio.sleep(1)
    return x


async def status_lines(progress: Progress, log: io.StringIO) -> list[str]:
    """The status lines a 10-second run writes to ``log``, and the final title."""
    await one_per_second.with_instruments(progress)(range(10)).collect()
    return [line for line in log.getvalue().splitlines() if line.startswith("conveyor run ")]


@virtual_clock
async def test_a_log_gets_a_status_line_every_log_interval() -> None:
    log = io.StringIO()
    status = await status_lines(Progress(file=log, log_interval=2.4), log)
    # 10 s of run: lines at 2.4, 4.8, 7.2 and 9.6 s, then the final table's title.
    done = [re.search(r"\d+/10", line) for line in status[:4]]
    assert [match.group() for match in done if match] == ["2/10", "4/10", "7/10", "9/10"]
    assert len(status) == 5
    assert "ETA 0:00:07" in status[1]  # 6 left at 4 items in 4.8 s


@virtual_clock
async def test_a_log_s_status_line_stays_one_line_however_narrow_the_console() -> None:
    # A log is read line by line: a status line longer than the console's
    # width (80 columns for a file, 40 here) is written whole.
    log = io.StringIO()
    narrow = Console(file=log, width=40)
    status = await status_lines(Progress(console=narrow, log_interval=2.4), log)
    assert len(status) == 5
    periodic = status[:4]  # (the fifth is the final table's title)
    assert all(re.search(r"elapsed \d+:\d\d:\d\d$", line) for line in periodic)


def test_progress_arguments_are_checked() -> None:
    with pytest.raises(TypeError, match="total"):
        Progress(total=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="refresh_per_second"):
        Progress(refresh_per_second=0)
    with pytest.raises(TypeError, match="either file or console"):
        Progress(file=io.StringIO(), console=Console())


def test_a_missing_rich_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "rich", None)
    with pytest.raises(ImportError, match=r"pip install 'conveyor\[progress\]'"):
        Progress()


async def test_concurrent_runs_share_one_display_and_each_leaves_its_totals() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=100, record=True)
    progress = Progress(console=console)
    pipeline = fetch.with_instruments(progress)
    async with anyio.create_task_group() as tg:
        tg.start_soon(pipeline(range(30)).collect)
        tg.start_soon(pipeline(range(20)).collect)
    text = console.export_text()
    assert "30/30 (100%)" in text
    assert "20/20 (100%)" in text
