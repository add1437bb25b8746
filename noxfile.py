"""Every session a developer or CI needs: `nox` runs lint, types and all tests; `nox -l` lists the rest."""

from __future__ import annotations

import os
import sys
import uuid
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
# Hook plugins: distributions that implement the core's hooks (the `selinon` entry-point group).
OPENTELEMETRY = "packages/selinon-opentelemetry"
PLUGINS = [OPENTELEMETRY]
# The upgrade path from Selinon 1.x: `selinon` 2.x, a distribution without code (docs/upgrading.md).
UPGRADE = "packages/selinon"
PACKAGES = [CORE, *ADAPTERS, *PLUGINS, UPGRADE]
# The core's own tests: without the suites that need every adapter (e2e, celery) or built wheels.
# (Those that run Selinon 1.4 beside the core run in `compat`.)
CORE_ONLY = ["-m", "not wheels and not selinon1", "--ignore", f"{CORE}/tests/e2e", "--ignore", f"{CORE}/tests/celery"]
# An adapter's tests, without those that run Selinon 1.4 beside it (the `compat` session runs them).
ADAPTER_ONLY = ["-m", "not selinon1"]
# Selinon 1.4 and the drivers it ran on, for the `compat` session.
SELINON1 = [
    "selinon[celery]==1.4.0", "redis<5", "sqlalchemy<2", "sqlalchemy-utils", "psycopg2-binary", "pymongo<5", "boto3<2",
]  # fmt: skip

MIN_PYTHON = "3.10"
# pyenv keeps interpreters out of PATH unless selected; make the oldest supported one findable.
for _found in sorted(Path.home().glob(f".pyenv/versions/{MIN_PYTHON}.*/bin"))[-1:]:
    os.environ["PATH"] = f"{os.environ['PATH']}{os.pathsep}{_found}"

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = [
    "lint", "types", "tests", f"tests-core-{MIN_PYTHON}", "e2e", "celery", "wheels", "upgrade", "compat",
]  # fmt: skip
nox.options.reuse_venv = "yes"


def _test_requirements(package: str) -> list[str]:
    pyproject = nox.project.load_toml(ROOT / package / "pyproject.toml")
    return list(nox.project.dependency_groups(pyproject, "test"))


@nox.session
# The upgrade distribution has no code: its tests need built wheels and Selinon 1.x, and run in `upgrade`.
@nox.parametrize("package", [nox.param(p, id=Path(p).name) for p in [CORE, *ADAPTERS, *PLUGINS]])
def tests(session: nox.Session, package: str) -> None:
    """One package's tests, with core and the package installed from this checkout."""
    if not (ROOT / package / "pyproject.toml").exists():
        session.skip(f"{package} does not exist yet")
    editable = [CORE] if package == CORE else [CORE, package]
    session.install(*[arg for p in editable for arg in ("-e", p)], *_test_requirements(package))
    # Tests put this secret into configurations; the whole report (every test's output and log records, passed
    # ones included) is then searched for it.
    secret = f"planted-{uuid.uuid4().hex}"
    only = CORE_ONLY if package == CORE else ADAPTER_ONLY if package in ADAPTERS else []
    output = session.run(
        "pytest", f"{package}/tests", *only, "-rA", "--log-level=DEBUG", *session.posargs,
        env={"SELINON_PLANTED_SECRET": secret}, silent=True,
    )  # fmt: skip
    report = Path(session.virtualenv.location) / "pytest-report.txt"
    report.write_text(output or "")
    print("\n".join((output or "").splitlines()[-40:]))
    print(f"full report, with every test's output and log records: {report}")
    if output and secret in output:
        session.error(f"the planted secret appeared in the output of {package}'s tests (search for 'planted-')")


def _build(session: nox.Session) -> Path:
    session.install("uv", "twine")
    dist = ROOT / "dist"
    dist.mkdir(exist_ok=True)
    for stale in dist.iterdir():
        stale.unlink()
    for package in PACKAGES:
        session.run("uv", "build", "--quiet", "--out-dir", str(dist), package)
    session.run("twine", "check", "--strict", *sorted(str(p) for p in dist.glob("*") if p.suffix in (".whl", ".gz")))
    return dist


@nox.session
def build(session: nox.Session) -> None:
    """A wheel and an sdist of every package into dist/, each checked with twine."""
    _build(session)


@nox.session
def wheels(session: nox.Session) -> None:
    """Install-and-go from freshly built wheels, in fresh virtual environments."""
    dist = _build(session)
    session.install("-e", CORE, *_test_requirements(CORE))
    session.run(
        "pytest", f"{CORE}/tests/test_wheels.py", "-m", "wheels", *session.posargs, env={"SELINON_WHEELS": str(dist)}
    )


@nox.session
def upgrade(session: nox.Session) -> None:
    """From `selinon[celery,redis]==1.4.0` (PyPI) to freshly built wheels, with docs/upgrading.md's command."""
    dist = _build(session)
    session.install("-e", CORE, *_test_requirements(UPGRADE))  # the core for its test kit (selinon.testing)
    session.run("pytest", f"{UPGRADE}/tests", "-m", "upgrade", *session.posargs, env={"SELINON_WHEELS": str(dist)})


@nox.session(python=MIN_PYTHON, name=f"tests-core-{MIN_PYTHON}")
def tests_core_min_python(session: nox.Session) -> None:
    """The core's tests on the oldest Python it supports."""
    session.install("-e", CORE, *_test_requirements(CORE))
    session.run("pytest", f"{CORE}/tests", *CORE_ONLY, "-q", *session.posargs)


@nox.session
def e2e(session: nox.Session) -> None:
    """Flows end to end with every adapter on its real server."""
    session.install("-e", CORE, *[arg for a in ADAPTERS for arg in ("-e", a)], *_test_requirements(CORE))
    for adapter in ADAPTERS:
        session.install(*_test_requirements(adapter))
    session.run("pytest", f"{CORE}/tests/e2e", "-m", "e2e", *session.posargs)


@nox.session
def celery(session: nox.Session) -> None:
    """Flows on real Celery workers (Redis and RabbitMQ brokers), storing through PostgreSQL and Redis."""
    session.install(
        "-e", f"{CORE}[celery]", "-e", ADAPTERS[0], "-e", ADAPTERS[1], "celery[redis]>=5.3,<6",
        "-e", OPENTELEMETRY, *_test_requirements(CORE), *_test_requirements(OPENTELEMETRY),
    )  # fmt: skip
    session.run("pytest", f"{CORE}/tests/celery", "-m", "celery", *session.posargs)


# Selinon 1.4.0 with the drivers it runs on: the peer the benchmarks compare against (its adapters and flows).
SELINON_1 = [
    # kombu 5.4 and later need redis-py 6.1 or later for a Redis broker; Selinon 1.4's storage wants redis-py 4.
    "selinon==1.4.0", "celery>=5.3,<5.4", "kombu>=5.3,<5.4", "redis<5", "sqlalchemy<2", "sqlalchemy-utils",
    "psycopg2-binary", "pymongo>=3.7,<4", "boto3>=1.9,<2", "packaging",
]  # fmt: skip


@nox.session
def compat(session: nox.Session) -> None:
    """Selinon 1.4 itself, in a virtual environment of its own, writes records that every adapter reads here, and
    reads those the adapters write with `layout: selinon1`; its `selinon-cli migrate` and `selinon migrate` agree."""
    selinon1 = Path(session.virtualenv.location).parent / "compat-selinon1"
    python = selinon1 / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    session.install("uv")
    if not python.exists():
        session.run("uv", "venv", "--quiet", "--python", sys.executable, str(selinon1))
    session.run("uv", "pip", "install", "--quiet", "--python", str(python), *SELINON1)
    session.install("-e", CORE, *[arg for a in ADAPTERS for arg in ("-e", a)], *_test_requirements(CORE))
    for adapter in ADAPTERS:
        session.install(*_test_requirements(adapter))
    selinon1_env = {"SELINON1_PYTHON": str(python)}
    # The core's own: the suites that need every adapter or Celery (e2e, celery) have no such tests.
    ignored = ["--ignore", f"{CORE}/tests/e2e", "--ignore", f"{CORE}/tests/celery"]
    session.run("pytest", f"{CORE}/tests", "-m", "selinon1", *ignored, "-q", *session.posargs, env=selinon1_env)
    for adapter in ADAPTERS:  # one run each: every adapter's tests start their own servers
        session.run(
            "pytest", f"{adapter}/tests", "-m", "selinon1", "-q", *session.posargs, env={"SELINON1_PYTHON": str(python)}
        )


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks: one table of ratios, each measured side by side in this run (`-- --json`, `-- --quick`)."""
    measured = [p for p in PACKAGES if p not in PLUGINS]  # hook plugins would observe, and be timed in, every flow
    session.install(
        *[arg for p in measured for arg in ("-e", p)], "secantusdb==0.7.0b3", "moto[server]>=5,<6", "pytest", "uv",
        "celery[redis]>=5.3,<6",
    )  # fmt: skip
    # Beside this session's environment: Selinon 1.4.0 cannot share one with selinon-core (both are `selinon`).
    selinon1 = Path(session.virtualenv.location).with_name("bench-selinon-1.4")
    python = str(selinon1 / "bin" / "python")
    session.run(
        "uv", "venv", "--quiet", "--allow-existing", "--python", str(Path(session.bin) / "python"), str(selinon1)
    )
    session.run("uv", "pip", "install", "--quiet", "--python", python, *SELINON_1)
    session.run("python", "benchmarks/run.py", "--selinon1", python, *session.posargs)


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
