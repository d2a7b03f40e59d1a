"""The timeline demo (``examples/timeline_demo.py``) prints the guide's timeline and draws it.

It runs on virtual time, so the "2 second" timelines take milliseconds and
their timestamps are exact.
"""

from __future__ import annotations

import importlib.util
import struct
import sys
import types
from pathlib import Path

import pytest

from .conftest import virtual_clock

DEMO = Path(__file__).resolve().parent.parent / "examples" / "timeline_demo.py"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def demo(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("timeline_demo", DEMO)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "timeline_demo", module)
    spec.loader.exec_module(module)
    return module


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's header chunk, which must come first."""
    assert data[:8] == PNG_SIGNATURE, "not a PNG file"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR"), "a PNG starts with its IHDR chunk"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@virtual_clock
async def test_the_demo_draws_both_timelines_as_a_png_chart(
    demo: types.ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from matplotlib.image import imread  # in the test extra: CI must have it, never skip

    chart = tmp_path / "timeline.png"
    await demo.main(chart)
    assert f"Chart of both timelines: {chart}" in capsys.readouterr().out
    data = chart.read_bytes()
    width, height = png_size(data)
    assert 600 <= width <= 2500
    assert 250 <= height <= 1500
    assert 10_000 < len(data) < 1_000_000  # drawn, and not absurdly large
    # imread decodes every chunk, so the file is whole.
    assert imread(chart).shape[:2] == (height, width)


@virtual_clock
async def test_without_matplotlib_the_demo_prints_only_the_text_timeline(
    demo: types.ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    chart = tmp_path / "timeline.png"
    await demo.main(chart)
    out = capsys.readouterr().out
    assert "2.0s  result 7 (took 0.7s)" in out  # ordered: 7 waits for the slow 6
    assert "0.7s  result 7 (took 0.7s)" in out  # as completed: 7 comes when ready
    assert "Chart" not in out
    assert not chart.exists()
