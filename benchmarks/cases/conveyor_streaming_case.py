"""conveyor-streaming 1.2.1 from PyPI, the asyncio-only package conveyor replaces.

It imports as `conveyor` too, so it lives in its own virtualenv
(`benchmarks/.venvs/conveyor-streaming`, made by `benchmarks/setup_peers.py`).
Its public API is conveyor's, so the adapter is conveyor's own; only the
import check and the backends differ. Input lists are passed as lists (1.2.1
treats any other sync iterable, a `range` say, as one item).

    benchmarks/.venvs/conveyor-streaming/bin/python \\
        benchmarks/cases/conveyor_streaming_case.py --workload overhead --n 2000
"""

from __future__ import annotations

try:
    from . import workload as wl
    from .conveyor_case import ConveyorAdapter, _module_from_dist
except ImportError:  # run as a script
    import workload as wl  # type: ignore[no-redef]
    from conveyor_case import ConveyorAdapter, _module_from_dist  # type: ignore[no-redef]

VERSION = "1.2.1"


class ConveyorStreamingAdapter(ConveyorAdapter):
    name = "conveyor-streaming"
    backends = ("asyncio",)

    def check_library(self) -> str | None:
        from importlib import metadata

        if not _module_from_dist(self.lib, "conveyor-streaming"):
            return f"`import conveyor` is not conveyor-streaming here ({self.lib.__file__})"
        version = metadata.version("conveyor-streaming")
        if version != VERSION:
            return f"conveyor-streaming {version} installed, {VERSION} expected"
        return None


if __name__ == "__main__":
    raise SystemExit(wl.main("conveyor-streaming", lambda args: ConveyorStreamingAdapter("default")))
