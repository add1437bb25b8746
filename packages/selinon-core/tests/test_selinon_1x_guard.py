"""Selinon 1.x mixed with the core in one environment: one line says how to repair it.

A copy of the core's package stands in for an environment; the real pip sequences from Selinon 1.4 are in
packages/selinon/tests/test_upgrade.py (`nox -s upgrade`).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import selinon
from selinon.upgrade import REPAIR, RESTORE

# The files Selinon 1.4 and selinon-core both install: uninstalling 1.4 deletes them.
SHARED = [
    "__init__.py", "cli.py", "config.py", "errors.py", "storage.py", "task.py",
    "storages/__init__.py", "storages/filesystem.py", "storages/memory.py",
]  # fmt: skip


@pytest.fixture
def site(tmp_path: Path) -> Path:
    shutil.copytree(Path(selinon.__file__).parent, tmp_path / "selinon", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def python(site: Path, code: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *flags, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(site)}, check=False
    )


def test_core_alone_imports_silently(site: Path) -> None:
    done = python(site, "import selinon")
    assert (done.returncode, done.stderr) == (0, "")


def test_1x_module_beside_the_core_warns_in_one_line(site: Path) -> None:
    (site / "selinon" / "dispatcher.py").write_text("# a module of Selinon 1.x\n")
    done = python(site, "import selinon")
    assert done.returncode == 0
    assert done.stderr.splitlines() == [
        f"{site / 'selinon' / 'dispatcher.py'}:0: SelinonUpgradeWarning: Selinon 1.x is installed over or under "
        f"selinon-core (its modules are mixed with the core's); repair with: {REPAIR}"
    ]


def test_command_says_how_to_restore_the_files_uninstalling_1x_deleted(site: Path) -> None:
    for shared in SHARED:
        (site / "selinon" / shared).unlink()
    # -S: without site-packages, where an editable install of the core would complete the namespace package.
    done = python(site, "from selinon.upgrade import main; main()", "-S")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "selinon: error: selinon-core's files are missing (selinon.cli is gone; uninstalling Selinon 1.x deletes "
        f"the files it shares with selinon-core); restore them with: {RESTORE}"
    ]


def test_command_runs_the_command_line(site: Path) -> None:
    done = python(
        site, "import sys; sys.argv = ['selinon', 'plugins', '--help']; from selinon.upgrade import main; main()"
    )
    assert done.returncode == 0, done.stderr
    assert "Installed storage adapters" in done.stdout
