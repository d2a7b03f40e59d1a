"""Several instruments as one, and the per-call hook sites of a stage.

:class:`Dispatch` is built once per run from the attached instruments (trio's
``Instruments`` is the model): for each hook it keeps the instruments that
override it, so a hook nobody defines is never called, and a run with no
per-call hook at all gives its stages no :class:`StageHooks`: they keep their
plain path. An instrument whose hook raises is logged and dropped for the
rest of the run; the run goes on.

:class:`StageHooks` is what a :class:`~._calls.Caller` holds to report its
calls: ``start`` before an attempt, then exactly one of ``finished`` or
``failed``, then ``retried`` before a retry's sleep. Each method is one
self-contained call site, so the stage runner can call them from wherever
its calls happen.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from anyio.abc import TaskGroup

from ..instrumentation import HOOKS, CallInfo, Instrument, RunInfo
from ._errors import guarded
from ._logs import log_fields, where

__all__ = ["CALL_HOOKS", "Dispatch", "StageHooks", "check_instruments"]

logger = logging.getLogger("conveyor")

CALL_HOOKS = ("call_started", "call_finished", "call_failed", "call_retried")


def _defines(instrument: object, hook: str) -> bool:
    """Whether ``instrument`` has its own ``hook`` (not the base class's no-op)."""
    impl = getattr(type(instrument), hook, None)
    return impl is not None and impl is not getattr(Instrument, hook)


def check_instruments(instruments: Iterable[object]) -> tuple[object, ...]:
    """The instruments, validated: each must define at least one hook.

    Raises:
        TypeError: naming the object and the hooks an instrument may define.
    """
    checked = tuple(instruments)
    for instrument in checked:
        if isinstance(instrument, type) or not any(_defines(instrument, h) for h in HOOKS):
            raise TypeError(
                f"instruments must be objects with at least one hook method "
                f"({', '.join(HOOKS)}), such as a conveyor.Instrument subclass "
                f"instance; got {instrument!r}"
            )
    return checked


class Dispatch:
    """The instruments of one run, organised by hook."""

    __slots__ = ("_by_hook",)

    def __init__(self, instruments: Iterable[object]) -> None:
        # {hook name: [bound method, ...]}, only for hooks someone defines. The
        # lists are shared with the stages' hooks, and edited in place.
        self._by_hook: dict[str, list[Callable[..., Any]]] = {}
        seen: list[object] = []
        for instrument in instruments:
            if any(instrument is other for other in seen):
                continue  # attached twice (pipeline and run): called once
            seen.append(instrument)
            for hook in HOOKS:
                if _defines(instrument, hook):
                    self._by_hook.setdefault(hook, []).append(getattr(instrument, hook))

    def defines(self, *hooks: str) -> bool:
        """Whether some instrument defines one of ``hooks``."""
        return any(self._by_hook.get(hook) for hook in hooks)

    def methods(self, hook: str) -> list[Callable[..., Any]]:
        """The live list of the instruments' ``hook`` methods (maybe empty)."""
        return self._by_hook.setdefault(hook, [])

    def fire(self, hook: str, *args: Any) -> None:
        """Call ``hook`` on every instrument that defines it."""
        methods = self._by_hook.get(hook)
        if methods:
            self.call_all(methods, *args)

    def call_all(
        self, methods: list[Callable[..., Any]], *args: Any, stage: str | None = None
    ) -> None:
        """Call each of ``methods``; an instrument whose method raises is dropped.

        ``stage``: the stage the hook is about, for the log record (a call's
        own context does not name its stage).
        """
        failed = None
        for method in methods:
            try:
                method(*args)
            except Exception as exc:
                failed = [*(failed or ()), (method, exc)]
        for dropped, error in failed or ():
            self._drop(dropped, error, stage)

    def _drop(self, method: Any, exc: Exception, stage: str | None = None) -> None:
        instrument = method.__self__
        fields = log_fields(stage)
        logger.error(
            "conveyor: instrument %r raised in %s and is detached from this run"
            + where(fields).replace("%", "%%"),
            instrument,
            method.__name__,
            exc_info=exc,  # the hook's own traceback (the except block has ended)
            extra=fields,
        )
        for methods in self._by_hook.values():
            methods[:] = [m for m in methods if getattr(m, "__self__", None) is not instrument]

    def start_monitors(self, tg: TaskGroup, run: RunInfo) -> None:
        """Start each instrument's ``monitor`` as a task of the run."""
        for monitor in tuple(self._by_hook.get("monitor", ())):
            tg.start_soon(guarded, self._monitor, monitor, run, name=f"conveyor {monitor!r}")

    async def _monitor(self, monitor: Any, run: RunInfo) -> None:
        try:
            await monitor(run)
        except Exception as exc:
            self._drop(monitor, exc)

    def stage_hooks(
        self, run: RunInfo, stage: str, index: int, kind: str, clock: Callable[[], float]
    ) -> StageHooks | None:
        """The call sites of one stage, or None when no instrument watches calls."""
        if not self.defines(*CALL_HOOKS):
            return None
        return StageHooks(self, run, stage, index, kind, clock)


class StageHooks:
    """Reports the calls of one stage of one run to the run's instruments."""

    __slots__ = (
        "_clock",
        "_dispatch",
        "_failed",
        "_finished",
        "_retried",
        "_started",
        "index",
        "kind",
        "run",
        "stage",
    )

    def __init__(
        self,
        dispatch: Dispatch,
        run: RunInfo,
        stage: str,
        index: int,
        kind: str,
        clock: Callable[[], float],
    ) -> None:
        self._clock = clock
        self._dispatch = dispatch
        self.run = run
        self.stage = stage
        self.index = index
        self.kind = kind
        self._started = dispatch.methods("call_started")
        self._finished = dispatch.methods("call_finished")
        self._failed = dispatch.methods("call_failed")
        self._retried = dispatch.methods("call_retried")

    def start(self, value: Any, attempt: int) -> CallInfo:
        """Before an attempt: a new :class:`CallInfo`, announced by ``call_started``."""
        call = CallInfo(self.run, self.stage, self.index, self.kind, value, attempt, self._clock())
        if self._started:
            self._dispatch.call_all(self._started, call, stage=self.stage)
        return call

    def prepare(self, value: Any, attempt: int) -> CallInfo:
        """A new :class:`CallInfo` that starts now, not yet announced.

        For calls sent to a worker in a round trip: each is announced
        (:meth:`announce`) once the round trip's reply tells that it started.
        """
        return CallInfo(self.run, self.stage, self.index, self.kind, value, attempt, self._clock())

    def announce(self, call: CallInfo) -> None:
        """``call_started`` for a call made by :meth:`prepare`."""
        if self._started:
            self._dispatch.call_all(self._started, call, stage=self.stage)

    def finished(self, call: CallInfo) -> None:
        """After the attempt returned."""
        call.duration = self._clock() - call.started
        if self._finished:
            self._dispatch.call_all(self._finished, call, stage=self.stage)

    def failed(self, call: CallInfo, error: BaseException) -> None:
        """After the attempt raised ``error`` (or was cancelled)."""
        call.duration = self._clock() - call.started
        call.error = error
        if self._failed:
            self._dispatch.call_all(self._failed, call, stage=self.stage)

    def retried(self, call: CallInfo, delay: float) -> None:
        """Before the sleep that precedes a retry of the failed ``call``."""
        call.retry_delay = delay
        if self._retried:
            self._dispatch.call_all(self._retried, call, stage=self.stage)
