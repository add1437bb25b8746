"""Install-and-go from the built wheels, each case in a fresh virtual environment (`nox -s wheels`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from test_install import uv

pytestmark = pytest.mark.wheels

ADAPTERS = {
    "selinon-storage-postgresql": ("postgresql", {"PostgreSQL", "SqlStorage"}),
    "selinon-storage-redis": ("redis", {"Redis"}),
    "selinon-storage-mongodb": ("mongodb", {"MongoDB"}),
    "selinon-storage-s3": ("s3", {"S3Storage", "S3"}),
}
BUILTINS = {"InMemoryStorage", "Filesystem"}


@pytest.fixture(scope="module")
def dist() -> Path:
    found = os.environ.get("SELINON_WHEELS")
    if not found:
        pytest.fail("SELINON_WHEELS is not set: run these tests with `nox -s wheels`, which builds the wheels first")
    return Path(found)


def fresh_env(tmp_path: Path, dist: Path, *requirements: str) -> Path:
    env = tmp_path / "env"
    subprocess.run([uv(), "venv", "--quiet", "--python", sys.executable, str(env)], check=True)
    if requirements:
        # --find-links: our distributions come from the wheels just built; their dependencies from the index.
        command = [uv(), "pip", "install", "--quiet", "--python", str(env), "--find-links", str(dist), *requirements]
        subprocess.run(command, check=True)
    return env


def installed(env: Path) -> set[str]:
    out = subprocess.run(
        [uv(), "pip", "list", "--python", str(env), "--format", "json"], capture_output=True, text=True, check=True
    ).stdout
    return {p["name"].lower().replace("_", "-") for p in json.loads(out)}


def selinon_json(env: Path, *argv: str) -> object:
    done = subprocess.run([str(env / "bin" / "selinon"), *argv, "--json"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def classnames(env: Path) -> dict[str, str]:
    return {p["classname"]: p["distribution"] for p in selinon_json(env, "plugins", "list")}  # type: ignore[attr-defined]


def test_wheels_were_built(dist: Path) -> None:
    names = {p.name.split("-")[0] for p in dist.glob("*.whl")}
    assert names == {"selinon", "selinon_core", "selinon_opentelemetry"} | {d.replace("-", "_") for d in ADAPTERS}


def test_upgrade_wheel_holds_metadata_only(dist: Path) -> None:
    # The `selinon` 2.x distribution owns no file of the `selinon` package: uninstalling it never deletes the core's.
    (wheel,) = dist.glob("selinon-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert {name.split("/")[0] for name in archive.namelist()} == {wheel.name.split("-py3")[0] + ".dist-info"}


def test_core_alone(tmp_path: Path, dist: Path) -> None:
    env = fresh_env(tmp_path, dist, "selinon-core")
    assert set(classnames(env)) == BUILTINS
    assert not any(name.startswith("selinon-storage-") for name in installed(env))


@pytest.mark.parametrize("distribution", list(ADAPTERS))
def test_core_and_one_adapter(tmp_path: Path, dist: Path, distribution: str) -> None:
    env = fresh_env(tmp_path / "adapter", dist, distribution)
    _, expected = ADAPTERS[distribution]
    assert classnames(env) == {**dict.fromkeys(BUILTINS, "selinon-core"), **dict.fromkeys(expected, distribution)}
    checked = selinon_json(env, "plugins", "check")
    assert {p["status"] for p in checked} == {"ok"}  # type: ignore[attr-defined]
    # Nothing is pulled in beyond the adapter itself and what core and its driver need anyway.
    wheel = next(dist.glob(f"{distribution.replace('-', '_')}-*.whl"))
    drivers = [r for r in _requires(env, distribution) if not r.startswith("selinon-core")]
    baseline = fresh_env(tmp_path / "baseline", dist, "selinon-core", *drivers)
    assert installed(env) - installed(baseline) == {distribution}, wheel.name


def _requires(env: Path, distribution: str) -> list[str]:
    script = f"import importlib.metadata as m; print('\\n'.join(m.requires({distribution!r}) or []))"
    out = subprocess.run([str(env / "bin" / "python"), "-c", script], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line and "extra ==" not in line]


def test_core_and_the_opentelemetry_plugin(tmp_path: Path, dist: Path) -> None:
    env = fresh_env(tmp_path, dist, "selinon-opentelemetry")
    rows = selinon_json(env, "plugins", "check")
    checked = {p.get("name") or p["classname"]: p["status"] for p in rows}  # type: ignore[attr-defined]
    assert checked["opentelemetry"] == "ok" and set(checked.values()) == {"ok"}, checked
    assert "opentelemetry-api" in installed(env) and "opentelemetry-sdk" not in installed(env)


def test_all_together(tmp_path: Path, dist: Path) -> None:
    env = fresh_env(tmp_path, dist, *ADAPTERS)
    expected = BUILTINS.union(*(names for _, names in ADAPTERS.values()))
    assert set(classnames(env)) == expected
    assert {p["status"] for p in selinon_json(env, "plugins", "check")} == {"ok"}  # type: ignore[attr-defined]
    versions = selinon_json(env, "version")
    assert set(versions) == {"selinon-core", *ADAPTERS}  # type: ignore[arg-type]


@pytest.mark.parametrize("extras", ["redis", "postgresql", "mongodb", "s3", "mongodb,s3"])
def test_core_extras_install_adapters(tmp_path: Path, dist: Path, extras: str) -> None:
    env = fresh_env(tmp_path, dist, f"selinon-core[{extras}]")
    wanted = {f"selinon-storage-{extra}" for extra in extras.split(",")}
    assert {n for n in installed(env) if n.startswith("selinon-storage-")} == wanted
    assert set(classnames(env).values()) == {"selinon-core"} | wanted
