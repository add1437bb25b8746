"""Hook plugins observe, never decide: a failing observer changes no storage call's outcome; a failing
configuration hook is named in the error; every hook plugin, working or broken, is listed."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeDistribution, adapter_source
from test_cli import run

from selinon import ConfigurationError, StoragePool, hookimpl, plugins, registry
from selinon.errors import BrokenPluginError
from selinon.storages.memory import InMemoryStorage


@pytest.fixture
def pool(tmp_path: Path) -> Path:
    path = tmp_path / "nodes.yaml"
    path.write_text(
        "storages: [{name: S, classname: InMemoryStorage, configuration: {json: true}}]\n"
        "tasks: [{name: T, storage: S}]\n"
    )
    StoragePool.configure(path)
    return path


@pytest.fixture(autouse=True)
def forget_hook_state() -> Any:
    yield
    plugins.observer_failures.clear()
    for name in [n for n in plugins.broken_plugins if n.startswith("acme")]:
        del plugins.broken_plugins[name]
    for name in [n for n in plugins.plugin_distributions if n.startswith("acme")]:
        del plugins.plugin_distributions[name]
        if plugins.pm.has_plugin(name):
            plugins.pm.unregister(name=name)
    plugins._loaded = False


class Raising:
    """An observer that raises on every event (on connect too)."""

    @hookimpl
    def storage_event(self, event: str) -> None:
        raise RuntimeError(f"tracer is down ({event})")


class Recording:
    def __init__(self) -> None:
        self.events: list[str] = []

    @hookimpl
    def storage_event(self, event: str) -> None:
        self.events.append(event)


def test_a_raising_observer_changes_no_outcome(pool: Path, caplog: pytest.LogCaptureFixture) -> None:
    recording = Recording()
    plugins.pm.register(recording)
    plugins.pm.register(Raising())  # called first (pluggy calls the last registered first)
    with caplog.at_level(logging.DEBUG, logger="selinon.plugins"):
        assert StoragePool.set(None, "f", "T", "a", {"v": 1}) == "a"
        assert StoragePool.retrieve("f", "T", "a") == {"v": 1}
        StoragePool.set(None, "f", "T", "b", 2)
    assert StoragePool.retrieve("f", "T", "b") == 2
    assert recording.events == ["connect", "store", "retrieve", "store", "retrieve"]
    name = f"{Raising.__module__}.Raising"
    assert plugins.observer_failures == {name: 5}
    [logged] = [r for r in caplog.records if r.name == "selinon.plugins"]
    assert logged.levelno == logging.ERROR
    assert f"hook plugin {name!r} raised in storage_event" in logged.getMessage()
    assert "RuntimeError: tracer is down (connect)" in logged.getMessage()


def test_a_raising_observer_does_not_fail_a_missing_record_differently(pool: Path) -> None:
    plugins.pm.register(Raising())
    with pytest.raises(KeyError):
        StoragePool.retrieve("f", "T", "missing")


def test_an_observer_failure_shows_no_secret(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    secret = "planted-observer-secret"
    path = tmp_path / "nodes.yaml"
    path.write_text(
        "storages: [{name: S, classname: Watched, import: probe_adapters,"
        f" configuration: {{password: {secret}, fail_with: 'no to {secret}'}}}}]\ntasks: [{{name: T, storage: S}}]\n"
    )
    StoragePool.configure(path)

    class Echoing:
        @hookimpl
        def storage_event(self, error: BaseException | None) -> None:
            raise RuntimeError(f"could not send {error}")

    plugins.pm.register(Echoing())
    with caplog.at_level(logging.DEBUG), pytest.raises(Exception) as raised:
        StoragePool.set(None, "f", "T", "x", 1)
    assert "no to ***" in str(raised.value)
    assert sum(plugins.observer_failures.values()) >= 1
    assert secret not in caplog.text


def test_a_failing_configuration_hook_is_named(pool: Path, tmp_path: Path) -> None:
    path = tmp_path / "secret.yaml"
    path.write_text("storages: [{name: S, classname: InMemoryStorage, configuration: {password: 'planted-cfg'}}]\n")
    StoragePool.configure(path)

    class Vault:
        @hookimpl
        def storage_configuration(self, configuration: dict[str, Any]) -> None:
            raise LookupError(f"vault has no entry for {configuration['password']}")

    plugins.pm.register(Vault())
    with pytest.raises(ConfigurationError) as raised:
        StoragePool.get_connected_storage("S")
    assert str(raised.value) == (
        f"{path}: storage 'S': hook plugin '{Vault.__module__}.{Vault.__qualname__}' failed in storage_configuration: "
        "LookupError: vault has no entry for ***"
    )
    assert raised.value.__cause__ is None and raised.value.__context__ is None


HOOKS = """
import selinon

@selinon.hookimpl
def storage_event(event):
    pass

@selinon.hookimpl
def storage_configuration(configuration):
    pass
"""

REGISTERING_BADLY = """
import selinon
from selinon.storages.memory import InMemoryStorage

@selinon.hookimpl
def register_storages(register):
    register(InMemoryStorage, name="HalfRegistered")
    raise RuntimeError("registry service unreachable")
"""


def test_plugins_list_shows_hook_plugins(
    capsys: pytest.CaptureFixture[str], make_distribution: MakeDistribution, caplog: pytest.LogCaptureFixture
) -> None:
    make_distribution(
        "acme-hooks",
        version="2.3.0",
        hook_plugins={"acme-trace": "acme_trace", "acme-broken": "acme_nothing_here", "acme-reg": "acme_reg"},
        modules={"acme_trace": HOOKS, "acme_reg": REGISTERING_BADLY},
    )
    plugins._loaded = False
    with caplog.at_level(logging.WARNING, logger="selinon.plugins"):
        code, out, _ = run(capsys, "plugins", "list", "--json")
    assert code == 0
    hooks = {r["name"]: r for r in json.loads(out) if r["source"] == "hook plugin"}
    assert hooks["acme-trace"] == {
        "classname": None,
        "distribution": "acme-hooks",
        "version": "2.3.0",
        "target": None,
        "source": "hook plugin",
        "requires_core": None,
        "status": "installed",
        "reason": None,
        "name": "acme-trace",
        "hooks": ["storage_configuration", "storage_event"],
    }
    assert hooks["acme-broken"]["status"] == "broken" and hooks["acme-broken"]["version"] == "2.3.0"
    assert "ModuleNotFoundError: No module named 'acme_nothing_here'" in hooks["acme-broken"]["reason"]
    assert hooks["acme-reg"]["status"] == "broken"
    assert hooks["acme-reg"]["reason"] == "register_storages raised RuntimeError: registry service unreachable"
    assert "HalfRegistered" not in out  # a plugin that failed to register registers nothing
    warnings = sorted(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert len(warnings) == 2  # one per broken plugin, however many times the registry was read
    assert warnings[0].startswith("hook plugin 'acme-broken' (acme-hooks 2.3.0) is broken: ModuleNotFoundError")

    code, out, _ = run(capsys, "plugins", "list")
    table = out.split("\n\n")[1].splitlines()
    assert table[0].split() == ["HOOK", "PLUGIN", "DISTRIBUTION", "VERSION", "HOOKS", "STATUS"]
    assert ["acme-trace", "acme-hooks", "2.3.0", "storage_configuration,storage_event", "installed"] in [
        line.split() for line in table
    ]

    code, out, _ = run(capsys, "plugins", "check", "--json")
    statuses = {r.get("name"): r["status"] for r in json.loads(out) if r["source"] == "hook plugin"}
    assert code == 1 and statuses == {"acme-trace": "ok", "acme-broken": "broken", "acme-reg": "broken"}


def test_broken_adapter_exits_1_in_both_checks(
    capsys: pytest.CaptureFixture[str], make_distribution: MakeDistribution, tmp_path: Path
) -> None:
    make_distribution(
        "acme-half",
        storages={"AcmeBroken": "acme_half:AcmeBroken"},
        modules={"acme_half": "import missing_dependency_of_acme_half"},
    )
    code, _, _ = run(capsys, "plugins", "check")
    assert code == 1
    config = tmp_path / "nodes.yaml"
    config.write_text("storages: [{name: Good, classname: InMemoryStorage}, {name: Bad, classname: AcmeBroken}]\n")
    code, out, err = run(capsys, "storages", "check", "-c", str(config), "--json")
    assert code == 1, err
    results = {r["storage"]: (r["status"], r["detail"]) for r in json.loads(out)}
    assert results["Good"] == ("ok", None)
    assert results["Bad"][0] == "broken"
    assert "No module named 'missing_dependency_of_acme_half'" in results["Bad"][1]
    config.write_text("storages: [{name: Typo, classname: AcmeBrokn}]\n")
    code, _, err = run(capsys, "storages", "check", "-c", str(config))
    assert code == 2 and "did you mean 'AcmeBroken'?" in err


def test_import_line_gets_the_core_range_check(make_distribution: MakeDistribution) -> None:
    make_distribution(
        "acme-future",
        storages={"Future": "acme_future_pkg:Future"},
        requires=["selinon-core>=99"],
        modules={"acme_future_pkg": adapter_source("Future")},
    )
    with pytest.raises(BrokenPluginError, match=r"Future \(import: acme_future_pkg\) is incompatible: .*>=99"):
        registry.resolve("Future", "acme_future_pkg")
    assert registry.resolve("InMemoryStorage", "selinon.storages.memory") is InMemoryStorage


def test_import_line_of_a_module_missing_a_dependency_is_broken(make_distribution: MakeDistribution) -> None:
    make_distribution("acme-dep", modules={"acme_dep": "import not_installed_dependency_of_acme"})
    with pytest.raises(BrokenPluginError, match="install what it needs"):
        registry.resolve("X", "acme_dep")
