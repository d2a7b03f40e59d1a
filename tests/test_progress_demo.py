"""The progress demo (``examples/progress_demo.py``) and its picture, ``docs/progress.svg``.

The demo runs on virtual time here, so its 6 seconds of pretend I/O take a
moment; the picture is rich's own SVG recording of the display.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import types
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

import pytest

from .conftest import virtual_clock

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "progress_demo.py"
PICTURE = ROOT / "docs" / "progress.svg"
SVG = "{http://www.w3.org/2000/svg}"
STAGES = ("fetch", "parse", "save")


@pytest.fixture
def demo(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("progress_demo", DEMO)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "progress_demo", module)
    spec.loader.exec_module(module)
    return module


def terminal_lines(svg: Path) -> list[str]:
    """The text of each terminal line an SVG of rich's shows, its pieces joined by a space.

    Parsing it as XML also checks that the file is well-formed. rich draws
    each line's text pieces as ``<text>`` elements clipped to that line.
    """
    root = ET.parse(svg).getroot()
    assert root.tag == f"{SVG}svg"
    assert re.fullmatch(r"0 0 \d+(\.\d+)? \d+(\.\d+)?", root.get("viewBox", ""))
    pieces: dict[int, list[tuple[float, str]]] = defaultdict(list)
    for text in root.iter(f"{SVG}text"):
        line = re.search(r"-line-(\d+)\)", text.get("clip-path", ""))
        if line is not None and text.text:
            pieces[int(line.group(1))].append((float(text.get("x", 0)), text.text))
    lines = []
    for number in sorted(pieces):
        words = (piece.replace("\xa0", " ").strip() for _, piece in sorted(pieces[number]))
        lines.append(" ".join(word for word in words if word))
    return lines


def assert_shows_the_display(lines: list[str], total: str) -> None:
    """Both frames: a running one halfway through, then the final one, each with
    its title, its bar and a row for every stage."""
    # (An all-digit run id is drawn as a number, a piece of its own: " :".)
    titles = [re.search(r"conveyor run \w{8} ?: (\w+), elapsed", line) for line in lines]
    assert [title.group(1) for title in titles if title] == ["running", "done"]
    assert sum(f"/{total} (" in line for line in lines) == 2
    assert any(f"{total}/{total} (100%)" in line for line in lines)
    for stage in STAGES:
        rows = [line for line in lines if re.fullmatch(rf"{stage}( [\d,]+){{5}}", line)]
        assert len(rows) == 2, (stage, lines)


@virtual_clock
async def test_the_demo_saves_a_picture_of_the_display_as_svg(
    demo: types.ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    picture = tmp_path / "progress.svg"
    saved = await demo.main(picture, items=1000)  # (the picture in the docs has 5,000)

    out = capsys.readouterr().out
    assert f"{saved} of 1000 records saved" in out
    assert f"A picture of the display: {picture}" in out
    assert_shows_the_display(terminal_lines(picture), "1,000")


def test_the_docs_picture_shows_every_stage_line() -> None:
    assert_shows_the_display(terminal_lines(PICTURE), "5,000")
