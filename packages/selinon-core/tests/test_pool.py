"""The process-wide storage pool."""

from __future__ import annotations

import multiprocessing
import os
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from probe_adapters import Watched

from selinon import (
    ConfigurationError,
    SelinonMissingDataException,
    StorageError,
    StoragePool,
    hookimpl,
    plugins,
)

CONFIG = """
storages:
  - name: Watched
    classname: Watched
    import: probe_adapters
    configuration: {password: 's3cr3t-pool-password'}
  - name: Parallel
    classname: WatchedThreadSafe
    import: probe_adapters
  - name: Cached
    classname: Watched
    import: probe_adapters
    cache: {name: LRU, configuration: {size: 2}}
  - name: Broken
    classname: Watched
    import: probe_adapters
    configuration: {password: 's3cr3t-pool-password', fail_with: 'server said no to s3cr3t-pool-password'}
tasks:
  - {name: Fetch, storage: Watched, storage_task_name: FetchAlias}
  - {name: Plain, storage: Watched}
  - {name: Audit, storage: Watched, storage_read_only: true}
  - {name: Fast, storage: Parallel}
  - {name: Slow, storage: Watched}
  - {name: Hot, storage: Cached}
  - {name: Failing, storage: Broken}
  - {name: Nowhere}
"""


@pytest.fixture
def nodes_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "nodes.yaml"
    path.write_text(CONFIG)
    StoragePool.configure(path)
    return path


def adapter(name: str) -> Watched:
    storage = StoragePool.get_storage(name)
    assert isinstance(storage, Watched)
    return storage


def test_one_connected_instance_per_storage(nodes_yaml: Path) -> None:
    first = StoragePool.get_connected_storage("Watched")
    assert first.is_connected()
    assert StoragePool.get_connected_storage("Watched") is first
    assert StoragePool.get_storage_by_task_name("Plain") is first
    assert StoragePool.get_storage_name_by_task_name("Fast") == "Parallel"


def test_storage_task_name_applies_both_ways(nodes_yaml: Path) -> None:
    StoragePool.set({"a": 1}, "flow", "Fetch", "id-1", {"r": 1})
    assert StoragePool.retrieve("flow", "Fetch", "id-1") == {"r": 1}
    assert adapter("Watched").calls == [("store", "FetchAlias"), ("retrieve", "FetchAlias")]
    StoragePool.delete("flow", "Fetch", "id-1")
    with pytest.raises(SelinonMissingDataException):
        StoragePool.retrieve("flow", "Fetch", "id-1")


def test_read_only_task_reads_but_never_writes(nodes_yaml: Path) -> None:
    StoragePool.set(None, "flow", "Plain", "shared", 42)
    assert StoragePool.retrieve("flow", "Audit", "shared") == 42
    with pytest.raises(StorageError, match="task 'Audit' has a read-only storage"):
        StoragePool.set(None, "flow", "Audit", "other", 1)


def test_set_error(nodes_yaml: Path) -> None:
    try:
        raise KeyError("boom")
    except KeyError:
        StoragePool.set_error(None, "flow", "Plain", "failed-1", sys.exc_info())
    error = adapter("Watched").retrieve_error("flow", "Plain", "failed-1")
    assert error["type"] == "builtins.KeyError"


def test_unknown_task_and_task_without_storage(nodes_yaml: Path) -> None:
    with pytest.raises(ConfigurationError, match="task 'Ghost' is not configured"):
        StoragePool.retrieve("flow", "Ghost", "x")
    with pytest.raises(ConfigurationError, match="task 'Nowhere' has no storage; add `storage:`"):
        StoragePool.set(None, "flow", "Nowhere", "x", 1)
    with pytest.raises(ConfigurationError, match="storage 'Ghost' is not configured; configured storages: Watched"):
        StoragePool.get_connected_storage("Ghost")


def test_cache_is_consulted_and_invalidated(nodes_yaml: Path) -> None:
    StoragePool.set(None, "flow", "Hot", "h1", "v1")
    assert StoragePool.retrieve("flow", "Hot", "h1") == "v1"
    assert StoragePool.retrieve("flow", "Hot", "h1") == "v1"
    assert adapter("Cached").calls.count(("retrieve", "Hot")) == 1  # the second came from the cache
    StoragePool.set(None, "flow", "Hot", "h1", "v2")  # a new result replaces the cached one
    assert StoragePool.retrieve("flow", "Hot", "h1") == "v2"
    assert adapter("Cached").calls.count(("retrieve", "Hot")) == 2


def test_non_thread_safe_adapter_is_serialised_and_thread_safe_one_is_not(nodes_yaml: Path) -> None:
    def hammer(task: str, thread: int) -> None:
        for n in range(15):
            StoragePool.set(None, "flow", task, f"{task}-{thread}-{n}", n)
            assert StoragePool.retrieve("flow", task, f"{task}-{thread}-{n}") == n

    for task in ("Slow", "Fast"):
        threads = [threading.Thread(target=hammer, args=(task, t)) for t in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert adapter("Watched").most_in_flight == 1
    assert adapter("Parallel").most_in_flight > 1
    assert len(adapter("Parallel").calls) == len(adapter("Watched").calls) == 6 * 15 * 2


def test_adapter_errors_become_storage_errors_without_secrets(nodes_yaml: Path) -> None:
    with pytest.raises(StorageError) as raised:
        StoragePool.set(None, "flow", "Failing", "x", 1)
    message = str(raised.value)
    assert message == "storage 'Broken' (Watched): store failed: RuntimeError: server said no to ***"
    assert raised.value.__cause__ is None  # the original message held the secret


def test_hooks_adjust_configuration_and_observe_events(nodes_yaml: Path) -> None:
    events: list[tuple[str, str, str | None, bool]] = []

    class Plugin:
        @hookimpl
        def storage_configuration(self, storage_name: str, configuration: dict[str, Any]) -> None:
            if storage_name == "Watched":
                configuration["password"] = "from-the-vault"

        @hookimpl
        def storage_event(
            self, event: str, storage_name: str, task_id: str | None, error: Any, duration: float
        ) -> None:
            assert duration >= 0
            events.append((event, storage_name, task_id, error is not None))

    plugins.pm.register(Plugin())
    StoragePool.set(None, "flow", "Plain", "e1", 1)
    with pytest.raises(SelinonMissingDataException):
        StoragePool.retrieve("flow", "Plain", "e2")
    assert adapter("Watched").password == "from-the-vault"
    assert events == [
        ("connect", "Watched", None, False),
        ("store", "Watched", "e1", False),
        ("retrieve", "Watched", "e2", True),
    ]


def test_unconfigured_pool_says_how_to_configure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SELINON_CONFIG", raising=False)
    with pytest.raises(ConfigurationError, match="StoragePool.configure\\('nodes.yaml'\\) or set SELINON_CONFIG"):
        StoragePool.get_connected_storage("Watched")
    path = tmp_path / "env.yaml"
    path.write_text(CONFIG)
    monkeypatch.setenv("SELINON_CONFIG", str(path))
    assert StoragePool.get_connected_storage("Watched").is_connected()


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("{name: S, classname: NotAStorage, import: probe_adapters}", "is not a selinon.DataStorage subclass"),
        (
            "{name: S, classname: NeedsHost, import: probe_adapters}",
            "does not fit NeedsHost: missing a required argument",
        ),
        (
            "{name: S, classname: NeedsHost, import: probe_adapters, configuration: {host: h, colour: red}}",
            "unexpected keyword argument 'colour'; its options are: host, port",
        ),
        ("{name: S, classname: Filesystem, configuration: {path: ''}}", "Filesystem rejected its configuration"),
        ("{name: S, classname: Nonexistent}", "no installed distribution provides classname 'Nonexistent'"),
    ],
)
def test_instantiation_errors_name_file_and_storage(tmp_path: Path, entry: str, expected: str) -> None:
    path = tmp_path / "nodes.yaml"
    path.write_text(f"storages: [{entry}]")
    StoragePool.configure(path)
    with pytest.raises(ConfigurationError) as raised:
        StoragePool.get_connected_storage("S")
    assert str(raised.value).startswith(f"{path}: storage 'S': ")
    assert expected in str(raised.value)


def _child_stores(queue: Any, parent_pid: int) -> None:
    storage = StoragePool.get_storage("Parallel")
    assert isinstance(storage, Watched)
    queue.put((storage.created_in == os.getpid(), storage.created_in != parent_pid, storage.calls))


def test_child_process_builds_its_own_adapter(nodes_yaml: Path) -> None:
    StoragePool.set(None, "flow", "Fast", "before-fork", 1)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_stores, args=(queue, os.getpid()))
    child.start()
    built_in_child, not_parents, calls = queue.get(timeout=30)
    child.join(timeout=30)
    assert child.exitcode == 0
    assert built_in_child and not_parents
    assert calls == []  # a new adapter: none of the parent's calls, none of its sockets
    assert adapter("Parallel").calls == [("store", "Fast")]  # the parent's adapter is untouched


def test_configuration_is_loaded_once(nodes_yaml: Path, tmp_path: Path) -> None:
    config = StoragePool.get_configuration()
    storage = StoragePool.get_connected_storage("Watched")
    assert StoragePool.get_configuration() is config
    replacement = tmp_path / "other.yaml"
    replacement.write_text(textwrap.dedent("storages: [{name: Watched, classname: InMemoryStorage}]"))
    StoragePool.configure(replacement)
    assert not storage.is_connected()  # the old adapter was disconnected
    assert type(StoragePool.get_connected_storage("Watched")).__name__ == "InMemoryStorage"


def test_a_subclass_that_overrides_calls_is_serialised_unless_it_says_otherwise() -> None:
    """A 1.x subclass of a thread-safe adapter whose own store may use a session that is not thread-safe."""
    from selinon.storage import calls_thread_safe
    from selinon.storages.filesystem import Filesystem

    class Renamed(Filesystem):  # options only: the adapter's own code runs
        pass

    class OwnStore(Filesystem):
        def store(self, *args: Any) -> Any:
            return super().store(*args)

    class OwnStoreSafe(OwnStore):
        thread_safe = True

    class BelowOwnStore(OwnStore):
        pass

    assert calls_thread_safe(Filesystem) and calls_thread_safe(Renamed)
    assert not calls_thread_safe(OwnStore) and not calls_thread_safe(BelowOwnStore)
    assert calls_thread_safe(OwnStoreSafe)
