"""Every package of the repository ships on its own: its version, CHANGELOG and core range must agree."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import selinon

PACKAGES = Path(__file__).parents[2]
CORE = "selinon-core"
ADAPTERS = sorted(p.name for p in PACKAGES.iterdir() if p.name.startswith("selinon-storage-"))
UPGRADE = "selinon"  # the upgrade path from Selinon 1.x
# Hook plugins (the `selinon` entry-point group), such as selinon-opentelemetry: every other package.
HOOK_PLUGINS = sorted(
    p.name for p in PACKAGES.iterdir() if (p / "pyproject.toml").exists() and p.name not in (CORE, UPGRADE, *ADAPTERS)
)
# Every extra of Selinon 1.4 (its METADATA's Provides-Extra), which 1.x users keep typing.
SELINON_1X_EXTRAS = {"celery", "mongodb", "postgresql", "redis", "s3", "sentry"}


def project(name: str) -> dict[str, Any]:
    data: dict[str, Any] = tomllib.loads((PACKAGES / name / "pyproject.toml").read_text())["project"]
    return data


def changelog_versions(name: str) -> list[str]:
    return re.findall(r"^## \[?(\d+\.\d+\.\d+\S*?)\]?(?:\s|$)", (PACKAGES / name / "CHANGELOG.md").read_text(), re.M)


def core_requirement(name: str) -> Requirement:
    found = [Requirement(r) for r in project(name)["dependencies"] if Requirement(r).name == CORE]
    assert len(found) == 1, f"{name} must depend on {CORE} exactly once, with a version range"
    return found[0]


def test_four_adapters_exist() -> None:
    assert ADAPTERS == [
        "selinon-storage-mongodb",
        "selinon-storage-postgresql",
        "selinon-storage-redis",
        "selinon-storage-s3",
    ]


@pytest.mark.parametrize("name", [CORE, *ADAPTERS, *HOOK_PLUGINS, UPGRADE])
def test_version_matches_changelog(name: str) -> None:
    version = project(name)["version"]
    versions = changelog_versions(name)
    assert versions, f"{name}/CHANGELOG.md has no '## X.Y.Z' entry"
    assert versions[0] == version, f"{name}: pyproject says {version}, CHANGELOG's newest entry is {versions[0]}"
    assert versions == sorted(versions, key=Version, reverse=True), f"{name}: CHANGELOG entries out of order"


def test_core_version_matches_package() -> None:
    assert project(CORE)["version"] == selinon.__version__


@pytest.mark.parametrize("name", [*ADAPTERS, *HOOK_PLUGINS])
def test_adapter_core_range(name: str) -> None:
    requirement = core_requirement(name)
    specifier = requirement.specifier
    core = project(CORE)["version"]
    assert str(specifier), f"{name}: declare a range for {CORE}, such as >=0.1,<1"
    assert specifier.contains(core, prereleases=True), f"{name} requires {CORE}{specifier}, which excludes {core}"
    assert any(s.operator in ("<", "<=", "~=", "==") for s in specifier), f"{name}: bound the {CORE} range above"
    assert stated_core_range(name) == specifier, f"{name}: CHANGELOG says selinon-core{stated_core_range(name)}"


def stated_core_range(name: str) -> Any:
    """The core range the CHANGELOG entry of the current version states, so that raising it is always recorded."""
    version = project(name)["version"]
    entries = (PACKAGES / name / "CHANGELOG.md").read_text().split("\n## ")
    current = next((e for e in entries if e.split("\n", 1)[0].strip(" []") == version), "")
    stated = re.search(r"Requires selinon-core\s*([^\s`]+?)[.,;]?(?:\s|$)", current)
    assert stated, f"{name}: the CHANGELOG entry of {version} must say 'Requires selinon-core <range>'"
    return Requirement(f"{CORE}{stated.group(1)}").specifier


@pytest.mark.parametrize("name", ADAPTERS)
def test_core_extra_admits_the_adapter(name: str) -> None:
    extra = name.removeprefix("selinon-storage-")
    (requirement,) = (Requirement(r) for r in project(CORE)["optional-dependencies"][extra])
    assert requirement.name == name
    assert requirement.specifier.contains(project(name)["version"], prereleases=True)


@pytest.mark.parametrize("name", [CORE, *ADAPTERS, *HOOK_PLUGINS, UPGRADE])
def test_metadata_is_complete(name: str) -> None:
    meta = project(name)
    for key in ("description", "readme", "requires-python", "license", "classifiers", "urls", "authors"):
        assert meta.get(key), f"{name}: pyproject.toml lacks project.{key}"
    assert meta["requires-python"] == ">=3.10"
    assert (PACKAGES / name / "README.md").stat().st_size > 500, f"{name}: write a README"


def test_hook_plugins_register_through_the_selinon_entry_point_group() -> None:
    assert HOOK_PLUGINS == ["selinon-opentelemetry"]
    for name in HOOK_PLUGINS:
        entry_points = tomllib.loads((PACKAGES / name / "pyproject.toml").read_text())["project"]["entry-points"]
        assert entry_points.get("selinon"), f"{name}: declare its plugin under [project.entry-points.selinon]"


def test_upgrade_distribution_is_a_new_major_version_without_dependencies() -> None:
    meta = project(UPGRADE)
    assert Version(meta["version"]).major >= 2, "a Selinon 1.x user must see a new major version"
    # pip installs a distribution without dependencies first: upgrading it removes Selinon 1.x before the core's
    # files are written. With selinon-core as a dependency, 1.x's removal would delete the core's files.
    assert meta.get("dependencies", []) == []


def test_upgrade_distribution_keeps_the_1x_extras() -> None:
    extras = {name: [Requirement(r) for r in reqs] for name, reqs in project(UPGRADE)["optional-dependencies"].items()}
    assert set(extras) == SELINON_1X_EXTRAS
    ours = {CORE: project(CORE)["version"], **{a: project(a)["version"] for a in ADAPTERS}}
    for extra, requirements in extras.items():
        brought = {r.name for r in requirements} & set(ours)
        assert brought, f"{UPGRADE}[{extra}] must bring selinon-core, or an adapter (which depends on it)"
        for requirement in requirements:
            if requirement.name in ours:
                assert requirement.specifier.contains(ours[requirement.name], prereleases=True), requirement
            if requirement.name == CORE:
                assert requirement.specifier == stated_core_range(UPGRADE), f"{UPGRADE}[{extra}]: {requirement}"
    for extra in ("postgresql", "redis", "mongodb", "s3"):
        assert f"selinon-storage-{extra}" in {r.name for r in extras[extra]}


def test_the_importlib_metadata_backport_is_a_dependency_only_before_python_3_12() -> None:
    (backport,) = (Requirement(r) for r in project(CORE)["dependencies"] if r.startswith("importlib-metadata"))
    assert backport.marker is not None
    assert backport.marker.evaluate({"python_version": "3.11"}) and not backport.marker.evaluate(
        {"python_version": "3.12"}
    )
    code = "import sys; from selinon import registry; registry.entries(); print('importlib_metadata' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == str(sys.version_info < (3, 12))
