"""What observability costs: the overhead benchmark with and without instruments.

Runs the `overhead` and `sync` workloads (3 trivial stages) through conveyor's
benchmark case, in fresh processes, for:

  baseline       main at the baseline commit (api.md §6: 12de01e), nothing attached
  none           this tree, nothing attached (the zero-cost claim: within 3%)
  progress       Progress() on a (forced) terminal, redrawn 4 times a second
  otel           OpenTelemetry() with the SDK: run span, metrics, duration histogram
  otel-counters  OpenTelemetry(call_durations=False): run span, counters, gauges
  otel-spans     OpenTelemetry(call_spans=True): also a span per call
  timing         with_call_timing(): call-duration percentiles in statistics()

Cells are interleaved round by round so that machine noise hits all variants
alike; each variant's figure is its best run (noise only slows). By default
(`--clock cpu`) a run is timed in CPU seconds of the process
(`time.process_time()`), not wall-clock seconds: on a machine shared with
other work, wall time swings by a third from run to run, which hides a 3%
budget, while the CPU a run needs hardly moves. `--clock wall` times with the
benchmark case's own wall clock instead. Then it times `statistics()` on a
10-stage pipeline mid-run (best batch of 100).

    python benchmarks/observability.py                 # about 5 minutes on 2 cores
    python benchmarks/observability.py --n 20000 --rounds 2 --out results.md

Needs rich, opentelemetry-sdk and git (for the baseline tree).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASE = ROOT / "benchmarks" / "cases" / "conveyor_case.py"
BASELINE = "12de01e"
VARIANTS = ["baseline", "none", "progress", "otel", "otel-counters", "otel-spans", "timing"]


def baseline_tree(commit: str) -> Path:
    """The baseline commit's ``conveyor`` package, unpacked in a temporary folder."""
    folder = Path(tempfile.mkdtemp(prefix="conveyor-baseline-"))
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, "conveyor"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


CPU_CELL = """
import sys, time
import anyio
sys.path.insert(0, sys.argv[1])
import workload as wl
from conveyor_case import ConveyorAdapter

variant, name, backend, n, repeat = sys.argv[2], sys.argv[3], sys.argv[4], *map(int, sys.argv[5:7])
adapter = ConveyorAdapter(variant)
plan = wl.plan_for(name)
pipeline = adapter.build(plan)

async def once(count):
    data = plan.make_input(count)
    start = time.process_time()
    results = 0
    async for _ in pipeline(data):
        results += 1
    used = time.process_time() - start
    assert results == count, (results, count)
    return count / used

async def main():
    await once(min(n, 1000))  # warm-up
    best = max([await once(n) for _ in range(repeat)])
    import conveyor
    print(best, conveyor.__file__)

anyio.run(main, backend=backend)
"""


def run_cell_cpu(
    variant: str, workload: str, backend: str, n: int, repeat: int, tree: Path
) -> float:
    """Items per CPU second, best of ``repeat`` runs, in a fresh process."""
    case_variant = "default" if variant in ("baseline", "none") else variant
    cases = ROOT / "benchmarks" / "cases"
    argv = [sys.executable, "-c", CPU_CELL, str(cases), case_variant, workload, backend]
    argv += [str(n), str(repeat)]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"{variant} {workload} {backend} failed:\n{out.stderr}")
    value, module = out.stdout.split()
    if not module.startswith(str(tree)):
        raise SystemExit(f"{variant} ran {module}, not {tree}")
    return float(value)


def run_cell(
    variant: str, workload: str, backend: str, n: int, repeat: int, baseline: Path, clock: str
) -> float:
    """Items per second, best of ``repeat`` runs, in a fresh process."""
    if clock == "cpu":
        tree = baseline if variant == "baseline" else ROOT
        return run_cell_cpu(variant, workload, backend, n, repeat, tree)
    # The script's folder comes first on sys.path, then PYTHONPATH: the tree
    # under test wins over whatever conveyor is installed.
    tree = baseline if variant == "baseline" else ROOT
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cwd = tree
    case_variant = "default" if variant in ("baseline", "none") else variant
    argv = [sys.executable, str(CASE), "--workload", workload, "--backend", backend]
    argv += ["--n", str(n), "--repeat", str(repeat), "--variant", case_variant]
    out = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    line = json.loads(out.stdout.strip().splitlines()[-1])
    if line["status"] != "ok":
        raise SystemExit(f"{variant} {workload} {backend}: {line}")
    if not line["library"]["module_file"].startswith(str(tree)):
        raise SystemExit(f"{variant} ran {line['library']['module_file']}, not {tree}")
    return float(line["value"])


SNAPSHOT = """
import time, anyio
from conveyor import single_task

@single_task(concurrency_limit=4)
async def hold(x):
    await anyio.sleep(0.05)
    return x

async def main():
    pipeline = hold
    for _ in range(9):
        pipeline = pipeline | hold
    for timed in (False, True):
        p = pipeline.with_call_timing() if timed else pipeline
        async with p.open(range(200)) as results:
            await results.__anext__()  # every stage has received work
            for _ in range(100):
                results.statistics()
            batches = []  # the best batch: preemption by other processes only slows
            for _ in range(20):
                start = time.perf_counter()
                for _ in range(100):
                    results.statistics()
                batches.append((time.perf_counter() - start) / 100 * 1e6)
            print(("with call timing" if timed else "plain"), round(min(batches), 1))

anyio.run(main)
"""


def snapshot_times() -> dict[str, float]:
    """Microseconds per ``statistics()`` of a 10-stage pipeline mid-run."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", SNAPSHOT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    found = {}
    for line in out.stdout.splitlines():
        label, _, value = line.rpartition(" ")
        found[label] = float(value)
    return found


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=30_000, help="items per run")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per cell")
    p.add_argument("--rounds", type=int, default=3, help="rounds of interleaved cells")
    p.add_argument("--workloads", default="overhead,sync")
    p.add_argument("--backends", default="asyncio,trio")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--baseline", default=BASELINE, help="commit of the baseline")
    p.add_argument("--baseline-tree", help="an unpacked baseline (a folder holding conveyor/)")
    p.add_argument("--out", help="also write the markdown table here")
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="what a run is timed by")
    args = p.parse_args()

    variants = args.variants.split(",")
    rows = [(w, b) for w in args.workloads.split(",") for b in args.backends.split(",")]
    baseline = Path(args.baseline_tree) if args.baseline_tree else baseline_tree(args.baseline)
    best: dict[tuple[str, str, str], float] = {}
    started = time.perf_counter()
    for round_ in range(args.rounds):
        for workload, backend in rows:
            for variant in variants:
                value = run_cell(
                    variant, workload, backend, args.n, args.repeat, baseline, args.clock
                )
                key = (workload, backend, variant)
                best[key] = max(best.get(key, 0.0), value)
        print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)

    lines = [
        f"Items per {'CPU ' if args.clock == 'cpu' else ''}second, best of "
        f"{args.rounds} x {args.repeat} runs of {args.n:,} items; "
        f"in brackets the change against the baseline ({args.baseline}), same run.",
        "",
        "| workload | backend | " + " | ".join(variants) + " |",
        "|---|---|" + "---:|" * len(variants),
    ]
    for workload, backend in rows:
        base = best.get((workload, backend, "baseline"))
        cells = []
        for variant in variants:
            value = best[(workload, backend, variant)]
            change = (
                f" ({(value / base - 1) * 100:+.1f}%)" if base and variant != "baseline" else ""
            )
            cells.append(f"{value:,.0f}{change}")
        lines.append(f"| {workload} | {backend} | " + " | ".join(cells) + " |")
    snapshots = snapshot_times()
    lines += [
        "",
        "`statistics()` of a 10-stage pipeline, mid-run: "
        + ", ".join(f"{label} {value} µs" for label, value in snapshots.items()),
        "",
        f"({time.perf_counter() - started:.0f} s; Python {sys.version.split()[0]})",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
