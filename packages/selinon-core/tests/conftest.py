from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from selinon import StoragePool, plugins, registry, trace
from selinon.testing.services import pytest_terminal_summary  # noqa: F401 - the skip summary


@pytest.fixture(autouse=True)
def fresh_state() -> Iterator[None]:
    """Each test starts with an unconfigured pool and no hook plugins beyond the entry-point ones."""
    before = set(plugins.pm.get_plugins())
    yield
    trace.reset()
    StoragePool.reset()
    for plugin in set(plugins.pm.get_plugins()) - before:
        plugins.pm.unregister(plugin)
    registry._warned.clear()
    registry.rescan()  # distributions a test installed are gone


MakeDistribution = Callable[..., Path]


@pytest.fixture
def make_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MakeDistribution:
    """Install a small distribution the way an installer lays it out: modules plus a ``.dist-info`` directory.

    The directory is put on ``sys.path``, so importlib-metadata and the import system see a real installation.
    """
    site = tmp_path / "site-packages"
    site.mkdir(exist_ok=True)
    monkeypatch.syspath_prepend(str(site))
    added_modules: list[str] = []

    def make(
        name: str,
        version: str = "1.0.0",
        storages: dict[str, str] | None = None,
        hook_plugins: dict[str, str] | None = None,
        requires: list[str] | None = None,
        modules: dict[str, str] | None = None,
    ) -> Path:
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        metadata = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
        metadata += [f"Requires-Dist: {r}" for r in requires or []]
        (info / "METADATA").write_text("\n".join(metadata) + "\n")
        groups = {"selinon.storages": storages or {}, "selinon": hook_plugins or {}}
        text = "".join(
            f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in entries.items())
            for group, entries in groups.items()
            if entries
        )
        (info / "entry_points.txt").write_text(text)
        for module, source in (modules or {}).items():
            (site / f"{module}.py").write_text(textwrap.dedent(source))
            added_modules.append(module)
        registry.rescan()  # installed while the process runs, as `pip install` in a live worker would
        return info

    yield make  # type: ignore[misc]
    for module in added_modules:
        sys.modules.pop(module, None)


ADAPTER_SOURCE = '''
from selinon import DataStorage, SelinonMissingDataException


class {name}(DataStorage):
    """A test adapter kept in a dict."""

    thread_safe = True

    def __init__(self, greeting="hello", password=None):
        self.greeting = greeting
        self.password = password
        self.records = {{}}
        self.connected = False

    def connect(self):
        if self.greeting == "fail":
            raise RuntimeError(f"refused with password {{self.password}}")
        self.connected = True

    def disconnect(self):
        self.connected = False

    def is_connected(self):
        return self.connected

    def store(self, node_args, flow_name, task_name, task_id, result):
        self.records[task_id] = result
        return task_id

    def retrieve(self, flow_name, task_name, task_id):
        try:
            return self.records[task_id]
        except KeyError:
            raise SelinonMissingDataException(task_id) from None

    def delete(self, flow_name, task_name, task_id):
        if self.records.pop(task_id, None) is None:
            raise SelinonMissingDataException(task_id)
'''


def adapter_source(name: str) -> str:
    return ADAPTER_SOURCE.format(name=name)
