"""Install-and-go, in fresh virtual environments built from this checkout (no editable installs)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).parents[1]
ACME = Path(__file__).parent / "fixtures" / "acme-storage"


def uv() -> str:
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    assert found, "uv is in the test dependency group; install it"
    return found


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh environment with only selinon-core installed, built from this checkout.

    The tests below add to it in file order: core alone first, then one plugin after another.
    """
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([uv(), "venv", "--quiet", "--python", sys.executable, str(root / "env")], check=True)
    subprocess.run([uv(), "pip", "install", "--quiet", "--python", str(root / "env"), str(CORE)], check=True)
    return root / "env"


def selinon(env: Path, *argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(env / "bin" / "selinon"), *argv], capture_output=True, text=True, cwd=cwd, check=False)


def test_core_alone_lists_its_builtins(venv: Path) -> None:
    done = selinon(venv, "plugins", "list", "--json")
    assert done.returncode == 0, done.stderr
    listed = {(p["classname"], p["distribution"]) for p in json.loads(done.stdout)}
    assert listed == {("InMemoryStorage", "selinon-core"), ("Filesystem", "selinon-core")}


def test_third_party_entry_point_is_usable_without_import_line(venv: Path, tmp_path: Path) -> None:
    subprocess.run([uv(), "pip", "install", "--quiet", "--python", str(venv), str(ACME)], check=True)
    listed = json.loads(selinon(venv, "plugins", "list", "--json").stdout)
    assert {"classname": "AcmeStorage", "distribution": "acme-storage", "version": "1.2.3"}.items() <= next(
        p for p in listed if p["classname"] == "AcmeStorage"
    ).items()
    config = tmp_path / "nodes.yaml"
    config.write_text("storages:\n  - name: Acme\n    classname: AcmeStorage\n    configuration: {greeting: hi}\n")
    done = selinon(venv, "storages", "check", "-c", str(config), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[1].split()[:3] == ["Acme", "AcmeStorage", "ok"]


HOOK_PLUGIN = Path(__file__).parents[3] / "examples" / "hook-plugin"


def test_hook_plugin_example_registers_and_fills_secrets(venv: Path, tmp_path: Path) -> None:
    subprocess.run([uv(), "pip", "install", "--quiet", "--python", str(venv), str(HOOK_PLUGIN)], check=True)
    listed = json.loads(selinon(venv, "plugins", "list", "--json").stdout)
    entry = next(p for p in listed if p["classname"] == "SecretsCheckedMemory")
    assert (entry["source"], entry["distribution"], entry["status"]) == ("hook", "selinon-env-secrets", "installed")
    secret = tmp_path / "password"
    secret.write_text("planted-hook-secret-7781\n")
    config = tmp_path / "nodes.yaml"
    config.write_text(
        "storages:\n"
        f"  - {{name: Vaulted, classname: SecretsCheckedMemory, configuration: {{password: 'file:{secret}'}}}}\n"
    )
    done = selinon(venv, "storages", "check", "-c", str(config))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[1].split()[:3] == ["Vaulted", "SecretsCheckedMemory", "ok"]
    assert "planted-hook-secret-7781" not in done.stdout + done.stderr


def test_generated_adapter_project_works_without_edits(venv: Path, tmp_path: Path) -> None:
    done = selinon(venv, "plugins", "new", "acme-db", "--dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    project = tmp_path / "selinon-storage-acme-db"
    assert {p.name for p in project.iterdir()} >= {"pyproject.toml", "README.md", "CHANGELOG.md", "src", "tests"}
    subprocess.run([uv(), "pip", "install", "--quiet", "--python", str(venv), str(project), "pytest"], check=True)
    listed = json.loads(selinon(venv, "plugins", "list", "--json").stdout)
    entry = next(p for p in listed if p["classname"] == "AcmeDb")
    assert (entry["distribution"], entry["target"]) == ("selinon-storage-acme-db", "selinon_storage_acme_db:AcmeDb")
    tests = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider"],
        cwd=project, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert " passed" in tests.stdout and "failed" not in tests.stdout
    assert "retrieve_owner" not in tests.stdout, "the skeleton's optional retrieve_owner() was not tested"
    again = selinon(venv, "plugins", "new", "acme-db", "--dir", str(tmp_path))
    assert again.returncode == 2 and "already exists" in again.stderr
