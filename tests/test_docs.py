"""Every ``python`` code block of ``docs/*.md`` runs, on asyncio and on trio.

A block is a complete program that defines ``async def main()``; it may guard
its own ``anyio.run(main)`` with ``if __name__ == "__main__":``, since the
test runs it as a module of another name and then awaits ``main()`` under the
``anyio_backend`` fixture. The assertions inside the block are what the page
claims. Skipped: ``docs/migrating.md``, the performance pages (prose and
measured numbers), the API reference (built from docstrings), ``docs/README.md``
(how to build the site, not a page of it), and blocks whose first line is
``# not run`` (fragments, or programs that need a real terminal or network).

Each block runs as a fresh module registered in ``sys.modules`` (so that
dataclasses and pickling work), compiled with the page as its file name and
its lines at their place on the page, so a traceback points into the docs.
"""

from __future__ import annotations

import inspect
import re
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
NOT_TESTED_PAGES = {"migrating.md", "performance.md", "performance-results.md", "api.md"}
NOT_PAGES = {"README.md"}  # the docs' own README: how to build the site
NOT_RUN = "# not run"

_FENCE_OPEN = re.compile(r"^```python\s*$")
_FENCE_CLOSE = re.compile(r"^```\s*$")
_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)\s]*)?\)")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # the 1-based line of the block's first code line
    source: str

    @property
    def id(self) -> str:
        return f"{self.page.name}:{self.line}"


def code_blocks(page: Path) -> list[Block]:
    """The ``python`` blocks of ``page``, in order (unterminated blocks are an error)."""
    blocks: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    start: int | None = None
    for number, line in enumerate(lines, start=1):
        if start is None:
            if _FENCE_OPEN.match(line):
                start = number + 1
        elif _FENCE_CLOSE.match(line):
            blocks.append(Block(page, start, "\n".join(lines[start - 1 : number - 1]) + "\n"))
            start = None
    if start is not None:
        raise AssertionError(f"{page.name}: the code block at line {start - 1} is never closed")
    return blocks


def pages() -> list[Path]:
    return sorted(page for page in DOCS.glob("*.md") if page.name not in NOT_PAGES)


def runnable_blocks() -> list[Block]:
    return [
        block
        for page in pages()
        if page.name not in NOT_TESTED_PAGES
        for block in code_blocks(page)
        if not block.source.startswith(NOT_RUN)
    ]


BLOCKS = runnable_blocks()


@pytest.mark.anyio
@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
async def test_doc_example_runs(block: Block, monkeypatch: pytest.MonkeyPatch) -> None:
    name = "docs_example_" + re.sub(r"\W", "_", block.id)
    module = types.ModuleType(name)
    module.__file__ = str(block.page)
    monkeypatch.setitem(sys.modules, name, module)
    # Pad with blank lines so that line numbers in tracebacks are the page's.
    code = compile("\n" * (block.line - 1) + block.source, str(block.page), "exec")
    exec(code, module.__dict__)
    main = module.__dict__.get("main")
    assert inspect.iscoroutinefunction(main), (
        f"{block.id}: a doc example must define `async def main()` "
        f"(or start with {NOT_RUN!r} if it is not a complete program)"
    )
    await main()


def test_every_page_has_examples_that_run() -> None:
    tested = {block.page.name for block in BLOCKS}
    for page in pages():
        if page.name not in NOT_TESTED_PAGES:
            assert page.name in tested, f"{page.name} has no runnable python example"


def test_index_links_to_every_page() -> None:
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    linked = set(_LINK.findall(index))
    missing = [page.name for page in pages() if page.name != "index.md" and page.name not in linked]
    assert not missing, f"docs/index.md does not link to {missing}"


@pytest.mark.parametrize("page", pages(), ids=[page.name for page in pages()])
def test_relative_links_resolve(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    broken = [
        target
        for target in _LINK.findall(text)
        if "://" not in target
        and not target.startswith("mailto:")
        and not (page.parent / target).exists()
    ]
    assert not broken, f"{page.name} links to missing files: {broken}"


_ON_ERROR = re.compile(r"""on_error=["'](\w+)["']""")


@pytest.mark.parametrize("page", pages(), ids=[page.name for page in pages()])
def test_every_on_error_value_a_page_names_is_accepted(page: Path) -> None:
    from conveyor import batch_task

    def total(values: list[int]) -> int:
        return sum(values)

    for value in _ON_ERROR.findall(page.read_text(encoding="utf-8")):
        batch_task(max_size=2, on_error=value)(total)  # raises for an unknown value
