"""Every session a developer or CI needs: `nox` runs lint, types and all tests; `nox -l` lists the rest."""

from __future__ import annotations

from pathlib import Path

import nox

ROOT = Path(__file__).parent
CORE = "packages/selinon-core"
ADAPTERS = [
    "packages/selinon-storage-postgresql",
    "packages/selinon-storage-redis",
    "packages/selinon-storage-mongodb",
    "packages/selinon-storage-s3",
]
PACKAGES = [CORE, *ADAPTERS]

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "types", "tests"]
nox.options.reuse_venv = "yes"


def _test_requirements(package: str) -> list[str]:
    pyproject = nox.project.load_toml(ROOT / package / "pyproject.toml")
    return list(nox.project.dependency_groups(pyproject, "test"))


@nox.session
@nox.parametrize("package", [nox.param(p, id=Path(p).name) for p in PACKAGES])
def tests(session: nox.Session, package: str) -> None:
    """One package's tests, with core and the package installed from this checkout."""
    if not (ROOT / package / "pyproject.toml").exists():
        session.skip(f"{package} does not exist yet")
    session.install("-e", CORE, "-e", package, *_test_requirements(package))
    session.run("pytest", f"{package}/tests", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def types(session: nox.Session) -> None:
    """mypy: the core in strict mode."""
    session.install("mypy>=1.11", "types-PyYAML", "pytest", "-e", CORE)
    session.run("mypy", "--strict", f"{CORE}/src/selinon")
