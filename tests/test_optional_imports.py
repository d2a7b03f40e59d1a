"""The core imports nothing optional; each integration imports its library on first use."""

from __future__ import annotations

import subprocess
import sys

OPTIONAL = ("rich", "opentelemetry", "distributed", "dask", "loky")


def test_importing_conveyor_and_its_integrations_imports_no_optional_library() -> None:
    code = (
        "import sys\n"
        "import conveyor, conveyor.integrations.progress, conveyor.integrations.otel\n"
        "import conveyor.executors, conveyor.integrations.dask\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {OPTIONAL!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
