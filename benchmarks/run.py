"""Run conveyor's benchmark suite: every (workload, case) cell in a fresh process.

    python benchmarks/run.py                      # full N, all cases
    python benchmarks/run.py --quick --only conveyor,handwritten,sequential   # CI
    python benchmarks/run.py --out docs/performance-results.md --chart docs/performance.png

Cases run one after another (never concurrently), each as
`PYTHON benchmarks/cases/<case>.py --workload W --mode M --backend B --n N`,
which prints one JSON line. conveyor, the hand-written anyio pipeline and the
sequential loop run with `--python` (the project's interpreter, default: this
one); conveyor-streaming and aiostream run in their own virtualenvs under
`benchmarks/.venvs/`, created on demand (see setup_peers.py); a peer that
cannot be installed shows as "n/a".

`--baseline-python PY` / `--baseline-src DIR` add `conveyor@baseline`: the
same conveyor case run against another checkout (the baseline commit), so
budgets are judged against the same run, never against a fixed number. Its
cells are interleaved with the others (`--interleave`): every timed run is a
process of its own, and the cases take turns, so machine load hits both alike.

The markdown table goes to stdout (and to `--out`); progress goes to stderr.
Exit status: 1 if any cell is WRONG (wrong values/order/limits, or the library
raised or crashed), else 0. Timings never fail the run. Standard library only;
the chart needs matplotlib in the interpreter running this script.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CASES_DIR = HERE / "cases"
REPO = HERE.parent

sys.path.insert(0, str(CASES_DIR))
sys.path.insert(0, str(HERE))
import setup_peers  # noqa: E402
import workload as wl  # noqa: E402


@dataclass(frozen=True)
class Case:
    impl: str  # conveyor | handwritten | conveyor-streaming | aiostream | sequential
    backend: str
    script: str
    variant: str = "default"
    peer: str | None = None  # name in setup_peers.PEERS: runs in that venv
    src: str | None = None  # put first on PYTHONPATH (a conveyor checkout)

    @property
    def key(self) -> str:
        v = "" if self.variant == "default" else f"·{self.variant}"
        return f"{self.impl}{v}[{self.backend}]"

    @property
    def label(self) -> str:
        names = {"handwritten": "hand-written anyio"}
        v = "" if self.variant == "default" else f" ({self.variant})"
        return f"{names.get(self.impl, self.impl)}{v} {self.backend}"


IMPLS = ("conveyor", "handwritten", "conveyor-streaming", "aiostream", "sequential")
BASELINE = "conveyor@baseline"


def all_cases(conveyor_variants: list[str]) -> list[Case]:
    cases = [
        Case("conveyor", b, "conveyor_case.py", v, src=str(REPO))
        for v in conveyor_variants
        for b in ("asyncio", "uvloop", "trio")
    ]
    cases += [
        Case("handwritten", "asyncio", "handwritten_anyio.py"),
        Case("handwritten", "trio", "handwritten_anyio.py"),
        Case(
            "conveyor-streaming", "asyncio", "conveyor_streaming_case.py", peer="conveyor-streaming"
        ),
        Case("aiostream", "asyncio", "aiostream_case.py", peer="aiostream"),
        Case("sequential", "asyncio", "sequential.py"),
    ]
    return cases


# ratio columns: (title, conveyor case key, peer case key); >1 = conveyor better
RATIOS = [
    *(
        (f"gain vs baseline {b}", f"conveyor[{b}]", f"{BASELINE}[{b}]")
        for b in ("asyncio", "uvloop", "trio")
    ),
    ("gain vs hand-written asyncio", "conveyor[asyncio]", "handwritten[asyncio]"),
    ("gain vs hand-written trio", "conveyor[trio]", "handwritten[trio]"),
    ("gain vs conveyor-streaming", "conveyor[asyncio]", "conveyor-streaming[asyncio]"),
]
# lower-is-better values below these count as these in ratios (resolution)
RATIO_FLOOR = {"MB": 1.0, "ms": 1.0, "s": 0.001}


# --------------------------------------------------------------------------
# running cells
# --------------------------------------------------------------------------


def baseline_cases(src: str | None) -> list[Case]:
    """conveyor's default case run from the baseline's interpreter / checkout."""
    return [Case(BASELINE, b, "conveyor_case.py", src=src) for b in ("asyncio", "uvloop", "trio")]


def _env_for(case: Case) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    if case.src:
        env["PYTHONPATH"] = case.src  # a checkout (the working tree), installed or not
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _checkout(module_file: str | None) -> str:
    """Where an imported package lives, with its git commit: 'DIR @ abc1234(-dirty)'."""
    if not module_file:
        return ""
    top = Path(module_file).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(top), "describe", "--always", "--dirty", "--abbrev=7"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return str(top)
    return f"{top} @ {out.stdout.strip()}" if out.returncode == 0 else str(top)


def merge_runs(workload: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One cell from several single-run processes (interleaved); runs stay in round order."""
    bad = next((r for r in parts if r["status"] != "ok"), None)
    if bad is not None:
        return bad
    values = [v for r in parts for v in r["runs"]]
    details = [d for r in parts for d in r.get("run_details") or [r.get("detail", {})]]
    merged = {**parts[0], **wl.summarize(workload, values, details)}
    merged["wall_s"] = round(sum(r.get("wall_s", 0.0) for r in parts), 2)
    merged["processes"] = len(parts)
    return merged


def run_cell(
    case: Case,
    python: str,
    workload: str,
    mode: str,
    n: int,
    repeat: int,
    workers: int,
    timeout: float,
) -> dict[str, Any]:
    cmd = [
        python,
        str(CASES_DIR / case.script),
        "--workload",
        workload,
        "--mode",
        mode,
        "--backend",
        case.backend,
        "--n",
        str(n),
        "--repeat",
        str(repeat),
        "--variant",
        case.variant,
        "--workers",
        str(workers),
    ]
    base = {
        "case": case.impl,
        "backend": case.backend,
        "variant": case.variant,
        "workload": workload,
        "mode": mode,
        "n": n,
    }
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=_env_for(case),
            cwd=str(CASES_DIR),
        )
    except subprocess.TimeoutExpired:
        return {
            **base,
            "status": "timeout",
            "reason": f"no result within {timeout:g} s",
            "wall_s": timeout,
        }
    wall = time.perf_counter() - t0
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            try:
                res = json.loads(line)
            except ValueError:
                break
            res["wall_s"] = round(wall, 2)
            res["case"] = case.impl  # conveyor@baseline runs conveyor's case script
            imported = (res.get("library") or {}).get("module_file") or ""
            if case.impl == BASELINE and imported.startswith(str(REPO) + os.sep):
                res["status"] = "n/a"
                res["reason"] = (
                    f"the baseline imported this working tree's conveyor ({imported}): "
                    "give --baseline-src or a --baseline-python with the baseline installed"
                )
            elif case.impl == BASELINE and res.get("phase") == "build":
                res["status"] = "n/a"  # a workload for an option the baseline predates
                res["reason"] = f"the baseline cannot build this pipeline: {res.get('reason')}"
            if res["status"] == "WRONG" and proc.stderr.strip():
                res["stderr_tail"] = proc.stderr.strip().splitlines()[-5:]
            return res
    tail = " / ".join(proc.stderr.strip().splitlines()[-3:])
    return {
        **base,
        "status": "WRONG",
        "wall_s": round(wall, 2),
        "reason": f"crashed with exit status {proc.returncode} and no result: {tail}"[:600],
    }


# --------------------------------------------------------------------------
# formatting
# --------------------------------------------------------------------------


def fmt_value(value: float, unit: str) -> str:
    if unit == "items/s":
        if value >= 1e6:
            return f"{value / 1e6:.2f}M"
        if value >= 1e3:
            return f"{value / 1e3:.3g}k"
        return f"{value:.0f}"
    if unit == "s":
        return f"{value:.3f}"
    return f"{value:.1f}"  # ms, MB


def advantage(conv: dict | None, peer: dict | None) -> float | None:
    """How many times better conveyor's cell is than the peer's (>1: conveyor wins)."""
    if not conv or not peer or conv.get("status") != "ok" or peer.get("status") != "ok":
        return None
    a, b = conv["value"], peer["value"]
    if conv["better"] == "higher":
        return a / b if b > 0 else None
    floor = RATIO_FLOOR.get(conv["unit"], 0.0)
    a, b = max(a, floor), max(b, floor)
    return b / a if a > 0 else None


def cell_text(res: dict | None, notes: list[str]) -> str:
    if res is None:
        return ""
    status = res["status"]
    if status == "ok":
        text = fmt_value(res["value"], res["unit"])
        if res.get("note"):
            notes.append(f"{res['case']} [{res['backend']}], {res['workload']}: {res['note']}")
            text += f" [{len(notes)}]"
        return text
    if status == "n/a":
        return "n/a"
    notes.append(
        f"{res['case']} [{res['backend']}], {res['workload']} "
        f"({res['mode']}): {status}: {res.get('reason', '')}"
    )
    label = "**WRONG**" if status == "WRONG" else status
    return f"{label} [{len(notes)}]"


def row_title(workload: str, mode: str) -> str:
    w = wl.WORKLOADS[workload]
    arrow = "higher is better" if w.better == "higher" else "lower is better"
    mode_text = "" if len(w.modes) == 1 else f", {mode.replace('_', '-')}"
    return f"{w.name}{mode_text} ({w.unit}, {arrow})"


def markdown(
    results: dict[tuple[str, str], dict[str, dict]],
    rows: list[tuple[str, str]],
    cases: list[Case],
    meta: dict[str, Any],
) -> str:
    notes: list[str] = []
    ratios = [
        r for r in RATIOS if any(c.key == r[1] for c in cases) and any(c.key == r[2] for c in cases)
    ]
    head = ["workload", "ideal", *(c.label for c in cases), *(r[0] for r in ratios)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    not_run: list[str] = []  # "case: reason", each once
    for row in rows:
        workload, mode = row
        cells = results.get(row, {})
        ideal_value, _ = wl.ideal(workload, meta["n"][workload])
        unit = wl.WORKLOADS[workload].unit
        ideal_text = {"memory": "flat", "overhead": "—", "sync": "—", "expansion": "—"}.get(
            workload, ""
        )
        if ideal_value is not None:
            ideal_text = fmt_value(ideal_value, unit)
        out = [row_title(workload, mode), ideal_text]
        for c in cases:
            res = cells.get(c.key)
            why = f"{c.label}: {res.get('reason', '')}" if res else ""
            if res and res["status"] == "n/a" and why not in not_run:
                not_run.append(why)
            out.append(cell_text(res, notes))
        for _, conv_key, peer_key in ratios:
            adv = advantage(cells.get(conv_key), cells.get(peer_key))
            out.append("" if adv is None else f"{adv:.2f}x")
        lines.append("| " + " | ".join(out) + " |")

    doc = [
        "# conveyor benchmarks",
        "",
        f"{meta['when']}, {meta['machine']}; {'quick' if meta['quick'] else 'full'} run "
        f"(N: {', '.join(f'{k} {v:,}' for k, v in meta['n'].items())}). Every cell ran "
        f"in a fresh process: one warm-up run, then {meta['repeat']} timed run(s); "
        "throughput is the best run, times are the median run."
        + (
            f" Interleaved: each timed run in a process of its own, the cases of a row "
            f"taking turns in {meta['repeat']} rounds (ABBA order)."
            if meta.get("interleaved")
            else ""
        ),
        "",
        *lines,
        "",
        "Gain columns: how many times better conveyor is than the peer on that row "
        "(> 1: conveyor better; for lower-is-better rows it is peer / conveyor, with values "
        "under 1 MB or 1 ms counted as 1).",
        "",
        "Ideals:",
        "",
    ]
    for workload in dict.fromkeys(w for w, _ in rows):
        _, text = wl.ideal(workload, meta["n"][workload])
        doc.append(f"- {workload}: {text or 'none (throughput)'}")
    details = _details(results, rows, cases)
    if details:
        doc += ["", "Details:", "", *details]
    doc += _baseline_section(results, rows, cases)
    if notes:
        doc += ["", "Notes:", "", *(f"{i}. {t}" for i, t in enumerate(notes, 1))]
    if not_run:
        doc += ["", "Not run (n/a):", "", *(f"- {r}" for r in not_run)]
    doc += ["", "Cases:", ""]
    for c in cases:
        where = meta.get("checkouts", {}).get(c.key)
        version = meta["versions"].get(c.key, "") + (f", from {where}" if where else "")
        doc.append(f"- {c.label}: `{c.script}`, {version}".rstrip(", "))
    doc.append("")
    return "\n".join(doc)


def _details(results: dict, rows: list, cases: list[Case]) -> list[str]:
    out = []
    for row in rows:
        workload, _ = row
        parts = []
        for c in cases:
            res = results.get(row, {}).get(c.key)
            if not res or res["status"] != "ok":
                continue
            d = res.get("detail", {})
            if workload == "fanout":
                parts.append(f"{c.label} {d.get('in_flight_peak')}")
            elif workload in ("batch", "batch4"):
                cpu = f", CPU {d['cpu_s']} s" if "cpu_s" in d else ""
                parts.append(
                    f"{c.label} {d.get('batch_calls')} calls of {d.get('mean_batch')}"
                    f" (at most {d.get('batch_calls_in_flight_peak')} at once{cpu})"
                )
            elif workload == "trickle":
                parts.append(
                    f"{c.label} {d.get('batch_calls')} calls of {d.get('mean_batch')},"
                    f" median lateness {d.get('median_lateness_ms')} ms"
                )
            elif workload == "rate":
                parts.append(
                    f"{c.label} at most {d.get('over_limit_max')} calls over the bound,"
                    f" CPU {d.get('cpu_s')} s"
                )
            elif workload == "memory":
                parts.append(f"{c.label} {d.get('items_per_s', 0):,}/s")
            elif workload == "expansion":
                parts.append(
                    f"{c.label} {d.get('rss_growth_mb', 0):.1f} MB, "
                    f"{d.get('first_value_ms', 0):.1f} ms"
                )
        if parts:
            what = {
                "fanout": "calls in flight, peak",
                "batch": "batch calls",
                "batch4": "batch calls",
                "trickle": "batch calls",
                "rate": "calls",
                "memory": "items/s while measuring memory",
                "expansion": "peak RSS growth (worst run), first value (median run)",
            }[workload]
            out.append(f"- {workload} {what}: " + "; ".join(parts))
    return out


def _spread(runs: list[float]) -> float:
    """(max - min) / max of a cell's runs, in %: how much noise it saw."""
    return (max(runs) - min(runs)) / max(runs) * 100 if runs and max(runs) > 0 else 0.0


def _baseline_section(results: dict, rows: list, cases: list[Case]) -> list[str]:
    """conveyor against conveyor@baseline, per row and backend, with the spread of the runs."""
    pairs = [
        (c, b)
        for c in cases
        for b in cases
        if c.impl == "conveyor"
        and c.variant == "default"
        and b.impl == BASELINE
        and b.backend == c.backend
    ]
    if not pairs:
        return []
    out = [
        "",
        "Against the baseline (same run; gain > 1: this tree is better; for throughput "
        "it is conveyor / baseline of the best runs; paired: the median and range of "
        "the per-round gains, each round running both cases back to back; spread: "
        "(max - min) / max of a case's runs, conveyor / baseline; CPU: the same from "
        "items per CPU second of the process, which a loaded machine disturbs less):",
        "",
        "| workload | backend | conveyor | baseline | gain | paired gain, median (range) "
        "| spread | CPU gain | CPU paired gain | CPU spread |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        workload, mode = row
        for c, b in pairs:
            mine, base = results.get(row, {}).get(c.key), results.get(row, {}).get(b.key)
            if advantage(mine, base) is None:
                continue
            unit = mine["unit"]
            cells = [
                f"{row_title(workload, mode)} | {c.backend} | {fmt_value(mine['value'], unit)} "
                f"| {fmt_value(base['value'], unit)}",
                *_gains(mine, base, mine["runs"], base["runs"]),
            ]
            cpu_mine, cpu_base = _cpu_runs(mine), _cpu_runs(base)
            has_cpu = bool(cpu_mine and cpu_base)
            cells += _gains(mine, base, cpu_mine, cpu_base) if has_cpu else ["", "", ""]
            out.append("| " + " | ".join(cells) + " |")
    return out


def _cpu_runs(res: dict) -> list[float]:
    return [d["items_per_cpu_s"] for d in res.get("run_details") or [] if d.get("items_per_cpu_s")]


def _gains(mine: dict, base: dict, runs: list[float], base_runs: list[float]) -> list[str]:
    """Cells: gain of the best runs, paired gains (median, range), spreads."""

    def gain(x: float, y: float) -> float | None:
        return advantage({**mine, "value": x}, {**base, "value": y})

    pick = max if mine["better"] == "higher" else statistics.median
    best = gain(pick(runs), pick(base_runs))
    paired = sorted(g for x, y in zip(runs, base_runs, strict=False) if (g := gain(x, y)))
    return [
        "" if best is None else f"{best:.3f}x ({(best - 1) * 100:+.1f}%)",
        f"{statistics.median(paired):.3f}x ({paired[0]:.3f}-{paired[-1]:.3f})"
        if len(paired) > 1
        else "",
        f"{_spread(runs):.0f}% / {_spread(base_runs):.0f}%",
    ]


def chart(path: Path, results: dict, rows: list, cases: list[Case], meta: dict) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed in this interpreter: no chart"
    colors = {
        "conveyor": "#1f77b4",
        "handwritten": "#ff7f0e",
        "conveyor-streaming": "#2ca02c",
        "aiostream": "#9467bd",
        "sequential": "#7f7f7f",
        BASELINE: "#aec7e8",
    }
    ncols = 2
    nrows = math.ceil(len(rows) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(13, 2.2 + 0.32 * len(cases) * nrows), squeeze=False
    )
    for ax, row in zip(axes.flat, rows, strict=False):
        workload, mode = row
        unit = wl.WORKLOADS[workload].unit
        labels, values, texts, cols = [], [], [], []
        for c in cases:
            res = results.get(row, {}).get(c.key)
            labels.append(c.label)
            cols.append(colors.get(c.impl, "#333333"))
            if res and res["status"] == "ok":
                values.append(res["value"])
                texts.append(fmt_value(res["value"], unit))
            else:
                values.append(0.0)
                texts.append(res["status"] if res else "")
        y = range(len(cases))
        ax.barh(list(y), values, color=cols)
        ax.set_yticks(list(y))
        ax.set_yticklabels(labels, fontsize=7)
        ax.invert_yaxis()
        top = max(values) if any(values) else 1.0
        shown = [v for v in values if v > 0]
        log_scale = unit == "items/s" and bool(shown)  # 7k .. 3M items/s side by side
        if log_scale:
            ax.set_xscale("log")
            ax.set_xlim(min(shown) / 2, top * 4)
        else:
            ax.set_xlim(0, top * 1.25)
        for i, t in enumerate(texts):
            x = (values[i] or min(shown)) * 1.08 if log_scale else values[i] + top * 0.01
            color = "red" if t == "WRONG" else "black"
            ax.text(x, i, t, va="center", fontsize=7, color=color)
        ideal_value, _ = wl.ideal(workload, meta["n"][workload])
        if ideal_value:
            ax.axvline(ideal_value, color="black", linestyle="--", linewidth=0.8)
        ax.set_title(row_title(workload, mode), fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    for ax in list(axes.flat)[len(rows) :]:
        ax.axis("off")
    fig.suptitle(
        f"conveyor benchmarks ({'quick' if meta['quick'] else 'full'} run, "
        f"{meta['machine']}); dashed line: ideal",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------


def _parse_n(text: str | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in filter(None, (text or "").split(",")):
        name, _, value = part.partition("=")
        if name not in wl.WORKLOADS or not value.isdigit():
            raise SystemExit(f"--n expects WORKLOAD=N[,...] with workloads {list(wl.WORKLOADS)}")
        out[name] = int(value)
    return out


def _list(text: str | None, allowed: tuple[str, ...] | list[str], flag: str) -> list[str]:
    items = [x.strip() for x in (text or "").split(",") if x.strip()]
    bad = [x for x in items if x not in allowed]
    if bad:
        raise SystemExit(f"{flag}: unknown {bad}; expected some of {list(allowed)}")
    return items


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick", action="store_true", help="small N, one timed run (CI: fails only on WRONG)"
    )
    p.add_argument("--out", type=Path, help="write the markdown report here")
    p.add_argument("--chart", type=Path, help="write a PNG chart here (needs matplotlib)")
    p.add_argument("--json", type=Path, help="write the raw per-cell results here")
    p.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter for conveyor / hand-written / sequential (default: this one)",
    )
    p.add_argument(
        "--baseline-python",
        help=f"add {BASELINE}: conveyor's case run by this interpreter (with the baseline "
        "installed, e.g. /work/baseline/.venv/bin/python); implies --interleave",
    )
    p.add_argument(
        "--baseline-src",
        help=f"add {BASELINE}: the conveyor checkout to import (put on PYTHONPATH; the "
        "interpreter is --baseline-python, else --python); implies --interleave",
    )
    p.add_argument(
        "--interleave",
        action="store_true",
        help="run each timed run in a process of its own, the cases of a row taking turns "
        "(ABBA order), so machine load hits them alike",
    )
    p.add_argument("--only", help=f"comma-separated subset of {','.join(IMPLS)}")
    p.add_argument("--workloads", help=f"comma-separated subset of {','.join(wl.WORKLOADS)}")
    p.add_argument("--backends", help="comma-separated subset of asyncio,uvloop,trio")
    p.add_argument(
        "--conveyor-variants",
        default="default",
        help="conveyor variants, comma-separated (default, open, collect, ...)",
    )
    p.add_argument("--n", help="override N, e.g. memory=200000,overhead=50000")
    p.add_argument("--repeat", type=int, help="timed runs per cell (default 3, quick 1)")
    p.add_argument(
        "--workers",
        type=int,
        default=wl.DEFAULT_CONCURRENCY,
        help="hand-written workers per stage / aiostream task_limit where a "
        "workload sets no limit (default %(default)s)",
    )
    p.add_argument("--timeout", type=float, help="seconds per cell (default 900, quick 120)")
    p.add_argument(
        "--no-install",
        action="store_true",
        help="do not create missing peer venvs (they show as n/a)",
    )
    args = p.parse_args(argv)

    impls = _list(args.only, IMPLS, "--only") or list(IMPLS)
    workloads = _list(args.workloads, list(wl.WORKLOADS), "--workloads") or list(wl.WORKLOADS)
    backends = _list(args.backends, wl.BACKENDS, "--backends") or list(wl.BACKENDS)
    variants = [v.strip() for v in args.conveyor_variants.split(",") if v.strip()]
    cases = [c for c in all_cases(variants) if c.impl in impls]
    with_baseline = bool(args.baseline_python or args.baseline_src)
    if with_baseline:  # next to conveyor's own columns
        at = sum(c.impl == "conveyor" for c in cases)
        cases[at:at] = baseline_cases(args.baseline_src)
    cases = [c for c in cases if c.backend in backends]
    interleave = args.interleave or with_baseline
    rows = [(w, m) for w in workloads for m in wl.WORKLOADS[w].modes]
    n = {w: (wl.WORKLOADS[w].quick_n if args.quick else wl.WORKLOADS[w].n) for w in workloads}
    n.update({k: v for k, v in _parse_n(args.n).items() if k in n})
    repeat = args.repeat or (1 if args.quick else 3)
    timeout = args.timeout or (120.0 if args.quick else 900.0)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    pythons: dict[str, str | None] = {}
    peer_missing: dict[str, str] = {}
    versions: dict[str, str] = {}
    for c in cases:
        if c.impl == BASELINE:
            pythons[c.key] = args.baseline_python or args.python
        elif c.peer is None:
            pythons[c.key] = args.python
        else:
            py, info = setup_peers.ensure(
                c.peer, base_python=sys.executable, install=not args.no_install, log=log
            )
            pythons[c.key] = str(py) if py else None
            if py:
                versions[c.key] = f"{c.peer} {info}"
            else:
                peer_missing[c.key] = info
                log(f"[setup] {c.peer}: n/a ({info})")

    results: dict[tuple[str, str], dict[str, dict]] = {}
    checkouts: dict[str, str] = {}
    rounds = repeat if interleave else 1
    total = len(rows) * len(cases) * rounds
    done = 0
    started = time.perf_counter()
    for row in rows:
        workload, mode = row
        parts: dict[str, list[dict]] = {c.key: [] for c in cases}
        for r in range(rounds):
            for c in cases if r % 2 == 0 else cases[::-1]:  # ABBA: neither case always first
                if parts[c.key] and parts[c.key][-1]["status"] != "ok":
                    continue  # n/a or WRONG once: no more rounds
                done += 1
                python = pythons[c.key]
                if python is None:
                    res = {
                        "case": c.impl,
                        "backend": c.backend,
                        "workload": workload,
                        "mode": mode,
                        "status": "n/a",
                        "reason": f"not installed: {peer_missing[c.key]}",
                    }
                else:
                    res = run_cell(
                        c,
                        python,
                        workload,
                        mode,
                        n[workload],
                        1 if interleave else repeat,
                        args.workers,
                        timeout,
                    )
                parts[c.key].append(res)
                lib = res.get("library", {})
                if lib.get("distributions") and c.key not in versions:
                    versions[c.key] = ", ".join(f"{k} {v}" for k, v in lib["distributions"].items())
                if (
                    c.script == "conveyor_case.py"
                    and lib.get("module_file")
                    and c.key not in checkouts
                ):
                    checkouts[c.key] = _checkout(lib["module_file"])
                shown = (
                    fmt_value(res["value"], res["unit"]) + f" {res['unit']}"
                    if res["status"] == "ok"
                    else f"{res['status']}: {res.get('reason', '')}"
                )
                log(
                    f"[{done}/{total}] {workload}/{mode} {c.key}: {shown} "
                    f"({res.get('wall_s', 0):.1f} s)"
                )
        for c in cases:
            results.setdefault(row, {})[c.key] = merge_runs(workload, parts[c.key])
    log(f"[done] {total} runs in {time.perf_counter() - started:.0f} s")

    py_version = next(
        (r["python"] for cells in results.values() for r in cells.values() if r.get("python")),
        platform.python_version(),
    )
    meta = {
        "when": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {py_version}",
        "quick": args.quick,
        "n": n,
        "repeat": repeat,
        "interleaved": interleave,
        "versions": versions,
        "checkouts": checkouts,
    }
    doc = markdown(results, rows, cases, meta)
    print(doc)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(doc)
        log(f"[out] {args.out}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        flat = [r for cells in results.values() for r in cells.values()]
        args.json.write_text(json.dumps({"meta": meta, "results": flat}, indent=1))
        log(f"[json] {args.json}")
    if args.chart:
        problem = chart(args.chart, results, rows, cases, meta)
        log(f"[chart] {problem}" if problem else f"[chart] {args.chart}")

    wrong = [r for cells in results.values() for r in cells.values() if r["status"] == "WRONG"]
    for r in wrong:
        log(f"[WRONG] {r['workload']}/{r['mode']} {r['case']}[{r['backend']}]: {r.get('reason')}")
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
