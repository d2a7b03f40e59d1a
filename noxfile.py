"""Developer sessions: ``nox`` (tests on each Python found), ``nox -s lint typecheck bench``."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typecheck", "docs"]
nox.options.reuse_existing_virtualenvs = True

ALL_PYTHONS = ["3.10", "3.11", "3.12", "3.13"]


def _expose_pyenv_versions() -> None:
    """Let pyenv's shims answer for every installed 3.10-3.13, not only the active one."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    if not root.is_dir() or "PYENV_VERSION" in os.environ:
        return
    installed = sorted(
        path.name for path in root.iterdir() if path.name.startswith(tuple(ALL_PYTHONS))
    )
    if installed:
        os.environ["PYENV_VERSION"] = ":".join(installed)


def _works(version: str) -> bool:
    found = shutil.which(f"python{version}")
    if found is None:
        return False
    return subprocess.run([found, "--version"], capture_output=True, check=False).returncode == 0


_expose_pyenv_versions()
PYTHONS = [v for v in ALL_PYTHONS if _works(v)] or None


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The test suite, on asyncio and trio."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", "-q", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff lint and format check."""
    session.install("-e", ".[lint]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHONS)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package, and the typing tests, on each Python found.

    mypy checks for the interpreter it runs on (no ``python_version`` in
    pyproject.toml), so each version's own dependencies are the ones checked.
    """
    session.install("-e", ".[test]")
    session.run("mypy")
    session.run("mypy", "--strict", "tests/typing")


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site, warnings as errors: docs/_build/html/index.html."""
    session.install("-e", ".[docs]")
    session.run(
        "python", "-m", "sphinx", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html"
    )


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmark suite against peers (see benchmarks/README.md)."""
    session.install("-e", ".", "trio", "uvloop", "matplotlib")
    session.run(
        "python",
        "benchmarks/run.py",
        "--out",
        "docs/performance-results.md",
        "--chart",
        "docs/performance.png",
        *session.posargs,
    )


@nox.session
def integrations(session: nox.Session) -> None:
    """The optional integrations with only their own extras (plus the SDK to test OTel)."""
    session.install("-e", ".[progress,otel]", "opentelemetry-sdk", "pytest", "pytest-timeout")
    session.install("trio", "hypothesis")
    session.run(
        "python",
        "-m",
        "pytest",
        "-q",
        "tests/test_progress.py",
        "tests/test_otel.py",
        "tests/test_run_outcomes.py",
        "tests/test_progress_demo.py",
    )


@nox.session
def bench_observability(session: nox.Session) -> None:
    """What instruments cost: the overhead benchmark with and without them."""
    session.install("-e", ".[progress,otel]", "opentelemetry-sdk", "trio")
    session.run("python", "benchmarks/observability.py", *session.posargs)
