"""Discovery: entry points (lazy), hook plugins, and turning a classname into a class."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeDistribution, adapter_source

from selinon import DataStorage, PluginError, hookimpl, installed, plugins, registry
from selinon.config import load
from selinon.pool import instantiate
from selinon.storages.memory import InMemoryStorage


def test_builtins_come_from_core_entry_points() -> None:
    found = {e.classname: e for e in registry.entries()}
    assert found["InMemoryStorage"].value == "selinon.storages.memory:InMemoryStorage"
    assert found["Filesystem"].distribution == "selinon-core"
    assert registry.resolve("Filesystem").__name__ == "Filesystem"


def test_listing_imports_no_adapter(make_distribution: MakeDistribution) -> None:
    make_distribution(
        "acme-storage",
        storages={"Acme": "acme_storage:Acme"},
        modules={"acme_storage": "raise RuntimeError('imported while listing')"},
    )
    entry = next(e for e in registry.entries() if e.classname == "Acme")
    assert (entry.distribution, entry.version, entry.value) == ("acme-storage", "1.0.0", "acme_storage:Acme")
    assert "acme_storage" not in sys.modules


def test_third_party_classname_resolves(make_distribution: MakeDistribution) -> None:
    make_distribution(
        "acme-storage", storages={"Acme": "acme_storage:Acme"}, modules={"acme_storage": adapter_source("Acme")}
    )
    cls = registry.resolve("Acme")
    assert issubclass(cls, DataStorage) and cls.__module__ == "acme_storage"


def test_first_party_classname_names_the_distribution() -> None:
    with pytest.raises(PluginError) as error:
        registry.resolve("MongoDB")
    assert "pip install selinon-storage-mongodb" in str(error.value)


def test_unknown_classname_suggests_close_names() -> None:
    with pytest.raises(PluginError, match="did you mean 'InMemoryStorage'"):
        registry.resolve("InMemoryStorge")
    with pytest.raises(PluginError, match="installed: .*Filesystem"):
        registry.resolve("Zzzzzz")


def test_two_distributions_claiming_one_classname(make_distribution: MakeDistribution) -> None:
    make_distribution("acme-one", storages={"Acme": "acme_one:Acme"})
    make_distribution("acme-two", storages={"Acme": "acme_two:Acme"})
    with pytest.raises(PluginError) as error:
        registry.resolve("Acme")
    message = str(error.value)
    assert "acme-one (acme_one:Acme)" in message and "acme-two (acme_two:Acme)" in message
    assert "add `import: <module>`" in message


def test_broken_adapters_are_reported_not_raised(make_distribution: MakeDistribution) -> None:
    make_distribution(
        "acme-broken",
        storages={"Missing": "acme_missing_module:X", "NotStorage": "acme_plain:Plain", "Good": "acme_good:Good"},
        modules={"acme_plain": "class Plain: pass", "acme_good": adapter_source("Good")},
    )
    by_name = {e.classname: e for e in registry.entries()}
    with pytest.raises(PluginError, match="Missing .* is broken: ModuleNotFoundError"):
        by_name["Missing"].load()
    with pytest.raises(PluginError, match="is not a selinon.DataStorage subclass"):
        by_name["NotStorage"].load()
    assert by_name["Good"].load().__name__ == "Good"


def test_incompatible_core_range(make_distribution: MakeDistribution) -> None:
    make_distribution(
        "acme-future",
        storages={"Future": "acme_future:Future"},
        requires=["selinon-core>=99", "other-thing; extra == 'x'"],
        modules={"acme_future": adapter_source("Future")},
    )
    make_distribution(
        "acme-now",
        storages={"Now": "acme_now:Now"},
        requires=["selinon-core>=0.1,<1"],
        modules={"acme_now": adapter_source("Now")},
    )
    by_name = {e.classname: e for e in registry.entries()}
    assert by_name["Future"].requires_core == ">=99"
    assert "requires selinon-core>=99, but selinon-core 0.2.0 is installed" in (by_name["Future"].incompatibility or "")
    with pytest.raises(PluginError, match="incompatible"):
        by_name["Future"].load()
    assert by_name["Now"].incompatibility is None


def test_hook_registers_classes_and_lazy_strings(make_distribution: MakeDistribution) -> None:
    make_distribution("acme-lazy", modules={"acme_lazy": adapter_source("Lazy")})

    class Plugin:
        @hookimpl
        def register_storages(self, register):  # type: ignore[no-untyped-def]
            register(InMemoryStorage, name="Scratch")
            register("acme_lazy:Lazy")

    plugins.pm.register(Plugin())
    by_name = {e.classname: e for e in registry.entries()}
    assert by_name["Scratch"].source == "hook"
    assert registry.resolve("Scratch") is InMemoryStorage
    assert "acme_lazy" not in sys.modules
    assert registry.resolve("Lazy").__module__ == "acme_lazy"


def test_hook_plugin_from_entry_point_and_a_broken_one(make_distribution: MakeDistribution) -> None:
    plugin = """
        import selinon
        from selinon.storages.memory import InMemoryStorage

        @selinon.hookimpl
        def register_storages(register):
            register(InMemoryStorage, name="FromHookPlugin")
    """
    make_distribution(
        "acme-hooks",
        hook_plugins={"acme": "acme_hooks", "acme-broken": "acme_hooks_broken"},
        modules={"acme_hooks": plugin, "acme_hooks_broken": "import not_installed_anywhere"},
    )
    plugins._loaded = False
    try:
        entry = next(e for e in registry.entries() if e.classname == "FromHookPlugin")
        assert (entry.distribution, entry.version) == ("acme-hooks", "1.0.0")
        assert "ModuleNotFoundError" in plugins.broken_plugins["acme-broken"]
    finally:
        for name in ("acme", "acme-broken"):
            if plugins.pm.has_plugin(name):
                plugins.pm.unregister(name=name)
            plugins.broken_plugins.pop(name, None)


def test_legacy_import_line_falls_back_to_registry(make_distribution: MakeDistribution) -> None:
    make_distribution(
        "acme-redis", storages={"Redis": "acme_redis:Redis"}, modules={"acme_redis": adapter_source("Redis")}
    )
    with pytest.warns(registry.LegacyImportWarning, match="`import: selinon.storages.redis` is no longer needed"):
        assert registry.resolve("Redis", "selinon.storages.redis").__module__ == "acme_redis"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        registry.resolve("Redis", "selinon.storages.redis")  # warned once only


def test_legacy_import_of_uninstalled_adapter() -> None:
    with pytest.raises(PluginError, match="pip install selinon-storage-redis"):
        registry.resolve("Redis", "selinon.storages.redis")


def test_explicit_import_wins(make_distribution: MakeDistribution) -> None:
    make_distribution("acme-mem", storages={"InMemoryStorage": "acme_mem:InMemoryStorage"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert registry.resolve("InMemoryStorage", "selinon.storages.memory") is InMemoryStorage


@pytest.mark.parametrize(
    ("import_path", "classname", "expected"),
    [
        ("not_a_module_anywhere", "X", "cannot import 'not_a_module_anywhere'"),
        ("selinon.storages.memory", "Nope", "module 'selinon.storages.memory' has no class 'Nope'"),
        ("selinon.storages.memory", "copy", "selinon.storages.memory.copy is not a selinon.DataStorage subclass"),
    ],
)
def test_explicit_import_errors(import_path: str, classname: str, expected: str) -> None:
    with pytest.raises(PluginError, match=expected):
        registry.resolve(classname, import_path)


def test_installed_distributions_are_scanned_once_per_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Resolving thousands of storages must not rescan every installed distribution for each one."""
    scans = 0
    real = installed.entry_points

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal scans
        scans += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(installed, "entry_points", counted)
    registry.rescan()
    path = tmp_path / "nodes.yaml"
    path.write_text("storages:\n" + "".join(f"  - {{name: S{i}, classname: InMemoryStorage}}\n" for i in range(500)))
    for storage in load(path).storages.values():
        instantiate(storage)
    assert scans == 1


def test_an_import_module_in_the_current_directory_is_said_to_need_the_python_path(tmp_path: Path) -> None:
    """The `selinon` script, unlike `python -m`, does not search the current directory."""
    (tmp_path / "acme_here.py").write_text(adapter_source("Here"))
    (tmp_path / "nodes.yaml").write_text(
        "storages:\n  - {name: Here, import: acme_here}\n  - {name: Gone, classname: Here, import: acme_gone}\n"
    )
    selinon = str(Path(sys.executable).parent / "selinon")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for storage, hint in [
        ("Here", "'acme_here' is in the current directory, which the `selinon` command does not search: put it on "
                 "the Python path (PYTHONPATH=. selinon ...), or install its package"),
        ("Gone", "check `import:`, and install its package or put the directory holding it on the Python path "
                 "(PYTHONPATH)"),
    ]:  # fmt: skip
        argv = [selinon, "storages", "check", "-c", "nodes.yaml", "--storage", storage]
        done = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
        module = "acme_here" if storage == "Here" else "acme_gone"
        expected = f"nodes.yaml: storage {storage!r}: cannot import {module!r}: No module named {module!r}; {hint}"
        assert done.stderr == f"selinon: error: {expected}\n"
    done = subprocess.run(
        [selinon, "storages", "check", "-c", "nodes.yaml", "--storage", "Here"],
        capture_output=True, text=True, cwd=tmp_path, env=env | {"PYTHONPATH": "."}, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


VERSIONS = ["0.1", "0.2", "0.2.0", "0.2.1", "0.10.3", "1", "1.0.0", "1.0.1", "2.0", "1!0.5", "0.2rc1", "0.2.post1",
            "1.0.dev3", "0.2+local", "not a version"]  # fmt: skip
RANGES = [">=0.2,<1", ">=0.2", "<1", "<=1.0", ">0.2", ">0.2.0", "==0.2", "==0.2.0.0", "!=0.2", ">= 0.2 , < 0.3",
          "~=0.2", "==0.2.*", ">=0.2rc1", "<1.0.dev1", ">=1!0"]  # fmt: skip


@pytest.mark.parametrize("specifiers", RANGES)
def test_in_range_decides_as_packaging_does(specifiers: str) -> None:
    from packaging.specifiers import SpecifierSet

    for version in VERSIONS:
        try:
            expected = SpecifierSet(specifiers).contains(version, prereleases=True)
        except Exception as exc:  # packaging refuses it: so must in_range
            with pytest.raises(type(exc)):
                registry.in_range(version, specifiers)
            continue
        assert registry.in_range(version, specifiers) is expected, (version, specifiers)


def test_a_plain_range_is_decided_without_importing_packaging_specifiers() -> None:
    code = (
        "import sys; from selinon.registry import in_range; "
        "print(in_range('0.2.0', '>=0.2,<1'), in_range('1.0.0', '>=0.2,<1'), 'packaging.specifiers' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["True", "False", "False"]
