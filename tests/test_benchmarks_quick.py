"""The benchmark suite's quick run: every workload must produce right results.

Timings are never asserted here (they live in docs/performance.md); this only
fails when a conveyor workload reports WRONG: wrong values, order or broken
limits. A peer's WRONG (the hand-written baseline's real-time timeline on a
loaded machine, say) is the peer's, and is reported in the benchmark's notes.
"""

from __future__ import annotations

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
            "overhead,sync,memory,batch,fanout",
            "--no-install",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    report = completed.stdout + completed.stderr
    wrong = [line for line in completed.stdout.splitlines() if line.startswith("[WRONG]")]
    assert not [line for line in wrong if " conveyor[" in line], report
    assert completed.returncode == 0, report
    assert "overhead" in completed.stdout
