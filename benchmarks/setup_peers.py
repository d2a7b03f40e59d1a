"""Create the peers' virtualenvs the benchmark compares conveyor with.

conveyor-streaming also imports as `conveyor`, so each peer gets a virtualenv
of its own under `benchmarks/.venvs/` (ignored by git):

    python benchmarks/setup_peers.py            # both peers
    python benchmarks/setup_peers.py aiostream  # one
    python benchmarks/setup_peers.py --force    # rebuild

`run.py` calls `ensure()` on demand. A peer that cannot be installed (no
network, say) is reported and left out: the benchmark shows it as "n/a".
Only the standard library is used.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENVS = HERE / ".venvs"

# peer name -> (pip requirements, a check that prints the installed version)
PEERS: dict[str, tuple[list[str], str]] = {
    "conveyor-streaming": (
        ["conveyor-streaming==1.2.1"],
        "import conveyor, importlib.metadata as m; print(m.version('conveyor-streaming'))",
    ),
    "aiostream": (
        ["aiostream==0.8.1"],
        "import aiostream; print(aiostream.__version__)",
    ),
    # The `cpu` workload (benchmarks/cpu.py) only.
    "pypeln": (
        ["pypeln==0.4.9"],
        "import importlib.metadata as m; import pypeln; print(m.version('pypeln'))",
    ),
}


def python_of(peer: str, venvs: Path = VENVS) -> Path:
    return venvs / peer / "bin" / "python"


def _check(python: Path, peer: str) -> str | None:
    """The peer's installed version, or None if its venv does not work."""
    if not python.exists():
        return None
    try:
        out = subprocess.run(
            [str(python), "-I", "-c", PEERS[peer][1]],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def ensure(
    peer: str,
    *,
    base_python: str = sys.executable,
    venvs: Path = VENVS,
    install: bool = True,
    force: bool = False,
    log=print,
) -> tuple[Path | None, str]:
    """Return (interpreter, version) for `peer`, creating its venv if needed.

    On failure returns (None, reason); never raises for install problems.
    """
    if peer not in PEERS:
        raise ValueError(f"unknown peer {peer!r}; expected one of {list(PEERS)}")
    python = python_of(peer, venvs)
    version = None if force else _check(python, peer)
    if version:
        return python, version
    if not install:
        return None, f"no working venv at {python.parent.parent} (run benchmarks/setup_peers.py)"

    target = venvs / peer
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    log(f"[setup] creating {target} for {' '.join(PEERS[peer][0])} ...")
    steps = [
        [base_python, "-m", "venv", str(target)],
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            *PEERS[peer][0],
        ],
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    for cmd in steps:
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
        except (OSError, subprocess.TimeoutExpired) as e:
            return None, f"`{' '.join(cmd[:4])} ...` failed: {e}"
        if res.returncode != 0:
            lines = (res.stderr or res.stdout).strip().splitlines()
            errors = [ln for ln in lines if ln.startswith("ERROR")] or lines[-2:]
            what = (
                "venv" if cmd[1:3] == ["-m", "venv"] else f"pip install {' '.join(PEERS[peer][0])}"
            )
            return None, f"{what} failed: {' / '.join(errors)}"
    version = _check(python, peer)
    if not version:
        return None, f"{peer} installed but does not import"
    log(f"[setup] {peer} {version} ready")
    return python, version


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("peers", nargs="*", default=list(PEERS), help=f"default: {' '.join(PEERS)}")
    p.add_argument("--force", action="store_true", help="recreate the venvs")
    p.add_argument("--venvs", type=Path, default=VENVS)
    args = p.parse_args()
    ok = True
    for peer in args.peers:
        python, info = ensure(peer, venvs=args.venvs, force=args.force)
        print(f"{peer}: {python} ({info})" if python else f"{peer}: n/a ({info})")
        ok = ok and python is not None
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
