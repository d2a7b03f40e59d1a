"""Pipelines: tasks chained with ``|``.

A pipeline is a recipe, not a run: calling it on data returns a lazy
:class:`~conveyor.stream.AsyncStream` and every call is an independent run
with its own workers, buffers and context. Composition never changes its
operands (:meth:`Pipeline.add` is the one mutating call).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterable, Iterable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._engine._instrument import check_instruments
from ._engine._run import NO_DATA, RunPlan, RunScope
from ._engine._timing import DEFAULT_SAMPLE_SIZE
from .context import ExecutionMode, PipelineContext, check_execution_mode
from .tasks import BaseTask

if TYPE_CHECKING:
    from typing_extensions import Never

    from .stream import AsyncStream

__all__ = ["Pipeline"]

# As for tasks: a pipeline's input is contravariant, its output covariant.
In = TypeVar("In", contravariant=True)
Out = TypeVar("Out", covariant=True)
Next = TypeVar("Next")

_CONTEXT_FIELDS = {f.name for f in dataclasses.fields(PipelineContext)}


def _check_task(value: object) -> BaseTask[Any, Any]:
    if not isinstance(value, BaseTask):
        raise TypeError(
            f"only conveyor tasks and pipelines can be piped, got {value!r}; "
            "decorate the function with @single_task or @batch_task"
        )
    return value


class Pipeline(Generic[In, Out]):
    """A sequence of tasks; each item flows through all of them in turn.

    ``pipeline(data)`` streams results in input order; ``.as_completed(data)``
    in completion order; ``async with pipeline.open(data) as stream`` runs it
    inside a block that owns every worker. Most pipelines are made with ``|``
    (``fetch | parse | store``), which never changes its operands.

    Args:
        context: The settings of the pipeline's runs (execution mode,
            ``max_parallelism``, ``data``); each run gets its own copy.
            Default: a fresh :class:`~conveyor.PipelineContext`.
        stages: Tasks to start with, in order (``add`` appends more).

    Raises:
        TypeError: ``context`` is not a ``PipelineContext``, or a stage is not
            a task.
    """

    def __init__(
        self: Pipeline[Any, Any],
        context: PipelineContext | None = None,
        *,
        stages: Iterable[BaseTask[Any, Any]] = (),
    ) -> None:
        if context is not None and not isinstance(context, PipelineContext):
            raise TypeError(f"context must be a PipelineContext, got {context!r}")
        self.context = context if context is not None else PipelineContext()
        self.stages: list[BaseTask[Any, Any]] = [_check_task(task) for task in stages]
        #: Instruments attached to every run of this pipeline (``with_instruments``).
        self.instruments: tuple[Any, ...] = ()
        #: Durations kept per stage for percentiles; 0 when not timing calls.
        self.call_timing = 0

    def _derive(
        self, context: PipelineContext, stages: list[BaseTask[Any, Any]]
    ) -> Pipeline[Any, Any]:
        """A new pipeline with this one's run settings (instruments, timing)."""
        new: Pipeline[Any, Any] = Pipeline(context, stages=stages)
        new.instruments = self.instruments
        new.call_timing = self.call_timing
        return new

    def __repr__(self) -> str:
        names = " | ".join(task.task_name for task in self.stages) or "(empty)"
        return f"<Pipeline {names} mode={self.context.execution_mode}>"

    # -- building -----------------------------------------------------------

    def add(self, *tasks: BaseTask[Any, Any] | Pipeline[Any, Any]) -> Pipeline[In, Any]:
        """Append tasks (or the tasks of pipelines) to *this* pipeline; returns it."""
        for task in tasks:
            if isinstance(task, Pipeline):
                self.stages.extend(task.stages)
            else:
                self.stages.append(_check_task(task))
        return self

    def __or__(self, other: BaseTask[Out, Next] | Pipeline[Out, Next]) -> Pipeline[In, Next]:
        """A new pipeline: these stages, then ``other``'s. Our context settings win."""
        more = other.stages if isinstance(other, Pipeline) else [_check_task(other)]
        new = self._derive(self.context.copy(), [*self.stages, *more])
        if isinstance(other, Pipeline):
            new.instruments = (*self.instruments, *other.instruments)
            new.call_timing = self.call_timing or other.call_timing
        return new

    def __ror__(self, other: Never) -> Never:
        # `task | pipeline` is handled by BaseTask.__or__; anything else is a mistake
        # (typed so: a type checker must not take this for a fallback of a
        # mismatched `task | pipeline`).
        _check_task(other)
        raise AssertionError("unreachable")  # pragma: no cover

    def with_context(self, **fields: Any) -> Pipeline[In, Out]:
        """A new pipeline with these context settings; unknown keys go into ``data``."""
        context = self.context.copy()
        for key, value in fields.items():
            if key in _CONTEXT_FIELDS:
                setattr(context, key, value)
            else:
                context.data[key] = value
        context.__post_init__()  # validate the new settings
        return self._derive(context, self.stages)

    def with_execution_mode(self, mode: ExecutionMode) -> Pipeline[In, Out]:
        """A new pipeline that releases results ``"ordered"`` or ``"as_completed"``.

        Raises:
            ValueError: ``mode`` is not ``"ordered"`` or ``"as_completed"``.
        """
        return self.with_context(execution_mode=check_execution_mode(mode))

    def with_instruments(self, *instruments: Any) -> Pipeline[In, Out]:
        """A new pipeline whose every run reports to these instruments too.

        An instrument is an object with some of the hook methods of
        :class:`conveyor.Instrument` (subclass it and override what you
        need), such as ``conveyor.integrations.progress.Progress()``. They
        are added to the instruments already attached; an instrument
        attached twice is called once.

        Raises:
            TypeError: an argument defines none of the hooks.
        """
        new = self._derive(self.context.copy(), self.stages)
        new.instruments = (*self.instruments, *check_instruments(instruments))
        return new

    def with_call_timing(self, sample_size: int = DEFAULT_SAMPLE_SIZE) -> Pipeline[In, Out]:
        """A new pipeline whose runs time every call, for ``statistics()``.

        Each :class:`~conveyor.StageStatistics` then has ``call_durations``:
        the p50/p95/p99 of its calls' durations, from a uniform sample of at
        most ``sample_size`` calls per stage (bounded memory on endless
        runs; exact up to that many calls). Timing costs two clock reads per
        call and takes every stage off its uninstrumented fast path.

        Args:
            sample_size (int): durations kept per stage, at least 1.

        Raises:
            TypeError / ValueError: ``sample_size`` is not a positive int.
        """
        if isinstance(sample_size, bool) or not isinstance(sample_size, int):
            raise TypeError(f"sample_size must be an int, got {sample_size!r}")
        if sample_size < 1:
            raise ValueError(f"sample_size must be at least 1, got {sample_size!r}")
        new = self._derive(self.context.copy(), self.stages)
        new.call_timing = sample_size
        return new

    # -- running ------------------------------------------------------------

    def _plan(
        self, data: Any, args: tuple[Any, ...], kwargs: dict[str, Any], ordered: bool
    ) -> RunPlan:
        if not self.stages and data is NO_DATA:
            raise TypeError("an empty pipeline needs data to run on")
        return RunPlan(
            stages=tuple(task.stage_spec() for task in self.stages),
            data=data,
            args=args if args else None,
            kwargs=kwargs,
            ordered=ordered,
            context=self.context,
            max_parallelism=self.context.max_parallelism,
            instruments=self.instruments,
            call_timing=self.call_timing,
        )

    def __call__(
        self, data: In | Iterable[In] | AsyncIterable[In] = NO_DATA, *args: Any, **kwargs: Any
    ) -> AsyncStream[Out]:
        """A lazy stream of this pipeline's results on ``data``; nothing runs yet.

        ``data`` may be any iterable or async iterable; a ``str``, ``bytes``,
        ``tuple``, ``dict`` or non-iterable value is one item. Without ``data``
        the first task is a source: it is called once, with no item, and what
        it returns or yields is the input. Extra arguments are side inputs of
        the first task for this run only.

        Args:
            data: The input: an iterable, an async iterable, or one item. Read
                lazily, as the admission window allows, so it may be endless.
            *args: Side inputs passed to the first task after each item.
            **kwargs: Side inputs passed to the first task by keyword.

        Returns:
            An :class:`~conveyor.AsyncStream`: iterate it with ``async for``,
            or call ``collect()``, ``first()`` or ``open()`` on it. The run
            starts when it is first read, and each stream runs once.

        Raises:
            TypeError: The pipeline has no tasks and no ``data`` was given.
        """
        from .stream import AsyncStream

        ordered = self.context.execution_mode == "ordered"
        return AsyncStream._of_plan(self._plan(data, args, kwargs, ordered))

    def as_completed(
        self, data: In | Iterable[In] | AsyncIterable[In] = NO_DATA, *args: Any, **kwargs: Any
    ) -> AsyncStream[Out]:
        """Like calling the pipeline, but results come in completion order."""
        from .stream import AsyncStream

        return AsyncStream._of_plan(self._plan(data, args, kwargs, ordered=False))

    def open(
        self, data: In | Iterable[In] | AsyncIterable[In] = NO_DATA, *args: Any, **kwargs: Any
    ) -> RunScope[Out]:
        """``async with pipeline.open(data) as stream``: a structured run.

        Every worker of the run lives inside the block. Leaving it in any way
        (normally, ``break``, an exception, cancellation) stops and awaits all
        of them before the block exits; a failure is raised as its original
        exception.

        Args:
            data: The input, as for calling the pipeline.
            *args: Side inputs of the first task, as for calling the pipeline.
            **kwargs: Side inputs by keyword, as for calling the pipeline.

        Returns:
            An async context manager; entering it starts the run and gives the
            result stream (iterate it; ``failures`` and ``statistics()`` on it
            describe the run).

        Raises:
            TypeError: The pipeline has no tasks and no ``data`` was given.
        """
        ordered = self.context.execution_mode == "ordered"
        return RunScope(self._plan(data, args, kwargs, ordered))
