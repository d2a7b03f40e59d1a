"""Every async test runs on asyncio and on trio.

Tests that depend on time use ``virtual_clock`` backends instead: trio's
``MockClock(autojump_threshold=0)`` and an asyncio loop whose clock jumps to
the next timer whenever nothing is ready (see ``virtual_time.py``), so that a
"2 second" pipeline runs in milliseconds and its timestamps are exact.
"""

from __future__ import annotations

import pytest
import trio.testing

from .virtual_time import VirtualTimeEventLoop

BACKENDS = [
    pytest.param("asyncio", id="asyncio"),
    pytest.param("trio", id="trio"),
]


@pytest.fixture(params=BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> object:
    if request.param == "asyncio-virtual":
        return ("asyncio", {"loop_factory": VirtualTimeEventLoop})
    if request.param == "trio-virtual":  # a fresh clock for every test
        return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})
    return request.param


VIRTUAL_BACKENDS = [
    pytest.param("asyncio-virtual", id="asyncio-virtual"),
    pytest.param("trio-virtual", id="trio-virtual"),
]


def virtual_clock(test):  # type: ignore[no-untyped-def]
    """Run ``test`` on both backends with virtual time instead of real time."""
    return pytest.mark.parametrize("anyio_backend", VIRTUAL_BACKENDS, indirect=True)(
        pytest.mark.anyio(test)
    )
