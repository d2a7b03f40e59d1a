"""The static types of tasks and pipelines: ``mypy --strict tests/typing`` is clean.

``tests/typing/check_pipelines.py`` pins inferred types with ``assert_type``
and expected errors with ``# type: ignore[<code>]`` lines (see its README).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(
    importlib.util.find_spec("mypy") is None,
    reason="mypy is not installed (it is in the 'test' extra: pip install -e '.[test]')",
)
def test_typed_stage_chains_check_with_mypy_strict(tmp_path: Path) -> None:
    # A private cache: no stale results, no races with other mypy runs.
    command = [
        sys.executable,
        "-m",
        "mypy",
        "--strict",
        "--cache-dir",
        str(tmp_path),
        "tests/typing",
    ]
    result = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, (
        f"mypy --strict tests/typing failed:\n{result.stdout}\n{result.stderr}"
    )
