"""The benchmark suite's quick run: every workload must produce right results.

Timings are never asserted here (they live in docs/performance.md); this only
fails when a conveyor workload reports WRONG: wrong values, order or broken
limits. A peer's WRONG (the hand-written baseline's real-time timeline on a
loaded machine, say) is the peer's, and is reported in the benchmark's notes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(sys.platform == "win32", reason="the suite reads /proc for memory")
def test_quick_benchmark_has_no_wrong_results() -> None:
    completed = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            "--quick",
            "--only",
            "conveyor,handwritten,sequential",
            # Not the timeline: its order check is real time, which a loaded
            # machine can invert by a few ms; tests/test_execution.py proves
            # the timeline's order on virtual clocks instead.
            "--workloads",
            "overhead,sync,memory,expansion,batch,fanout",
            "--no-install",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    report = completed.stdout + completed.stderr
    # the runner logs each WRONG cell on stderr and then exits with status 1
    wrong = [line for line in completed.stderr.splitlines() if line.startswith("[WRONG]")]
    assert not [line for line in wrong if " conveyor[" in line], report
    assert completed.returncode == (1 if wrong else 0), report
    assert "overhead" in completed.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="the suite reads /proc for memory")
def test_baseline_checkout_runs_in_the_same_run_with_a_gain_per_backend(tmp_path: Path) -> None:
    # a second checkout of the package: here a copy of this one, put on PYTHONPATH
    shutil.copytree(ROOT / "conveyor", tmp_path / "conveyor")
    completed = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            "--quick",
            "--only",
            "conveyor",
            "--workloads",
            "overhead",
            "--backends",
            "asyncio,trio",
            "--repeat",
            "2",
            "--baseline-src",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    report = completed.stdout + completed.stderr
    assert completed.returncode == 0, report
    rows = [line for line in completed.stdout.splitlines() if line.startswith("| overhead")]
    comparison = [line for line in rows if line.count("|") == 11]  # the baseline table's rows
    assert len(comparison) == 4, report  # ordered and as-completed, on asyncio and trio
    assert f"from {tmp_path}" in completed.stdout  # the baseline imported the copy
    # interleaved: 2 rounds of 4 cases for each of the 2 rows, one process each
    assert "[16/16]" in completed.stderr, report


@pytest.mark.skipif(sys.platform == "win32", reason="the script reads /proc for memory")
def test_expansion_rows_script_prints_every_row_of_issue_9s_table() -> None:
    completed = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "expansion_rows.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    report = completed.stdout + completed.stderr
    assert completed.returncode == 0, report
    table = [line for line in completed.stdout.splitlines() if line.startswith("| ")]
    header, *rows = table
    assert header == "| program | asyncio | trio | right |", report
    # gen in 4 ways (ordered, as-completed, open() in each mode), listy, batch, lines, endless
    assert len(rows) == 8, report
    cells = [row.split(" | ")[1:3] for row in rows]
    failed = ("timed out", "raised", "WRONG", "died", "hung", "not run", "n/a")
    assert not [cell for row in cells for cell in row if any(f in cell for f in failed)], report
    *_, lines, endless = cells
    assert all(", 20,000 in " in cell for cell in lines), report
    assert all(cell.startswith("10 values") and "finally ran" in cell for cell in endless), report
