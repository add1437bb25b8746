"""The pool's result cache: hands out copies, and a retrieve racing a store never caches the older value."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fault_adapters import Paused

from selinon import StoragePool

CONFIG = """
storages:
  - name: Paused
    classname: Paused
    import: fault_adapters
    cache: {name: LRU, configuration: {size: 10}}
  - name: Files
    classname: Filesystem
    configuration: {path: '%s'}
    cache: {name: %s, configuration: {size: 4}}
tasks:
  - {name: Slow, storage: Paused}
  - {name: Saved, storage: Files}
"""


@pytest.fixture(params=["LRU", "MRU", "FIFO", "LIFO", "RR"])
def configured(tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    path = tmp_path / "nodes.yaml"
    path.write_text(CONFIG % (tmp_path / "results", request.param))
    StoragePool.configure(path)
    yield
    StoragePool.reset()


def test_a_caller_changing_a_result_changes_no_later_retrieve(configured: None) -> None:
    StoragePool.set(None, "f", "Saved", "t1", {"items": [1, 2], "n": {"deep": True}})
    first = StoragePool.retrieve("f", "Saved", "t1")  # a miss: read from the storage, then cached
    first["items"].append(3)
    first["n"]["deep"] = False
    second = StoragePool.retrieve("f", "Saved", "t1")  # a hit
    assert second == {"items": [1, 2], "n": {"deep": True}}
    second["items"].clear()
    assert StoragePool.retrieve("f", "Saved", "t1") == {"items": [1, 2], "n": {"deep": True}}


def test_a_retrieve_overtaken_by_a_store_does_not_cache_the_older_value(configured: None) -> None:
    StoragePool.set(None, "f", "Slow", "t1", {"v": 198})
    adapter = StoragePool.get_connected_storage("Paused")
    assert isinstance(adapter, Paused)
    adapter.pause.set()
    seen: list[Any] = []
    reader = threading.Thread(target=lambda: seen.append(StoragePool.retrieve("f", "Slow", "t1")))
    reader.start()
    assert adapter.paused.wait(10)  # the reader holds v=198, read before the store below
    adapter.pause.clear()
    StoragePool.set(None, "f", "Slow", "t1", {"v": 199})
    adapter.release.set()
    reader.join(10)
    assert seen == [{"v": 198}]  # it began before the store returned: either value is right for it
    assert StoragePool.retrieve("f", "Slow", "t1") == {"v": 199}  # but it must not have cached 198


def test_error_records_and_deletes_forget_the_cached_result(configured: None) -> None:
    StoragePool.set(None, "f", "Saved", "t1", {"v": 1})
    assert StoragePool.retrieve("f", "Saved", "t1") == {"v": 1}
    StoragePool.delete("f", "Saved", "t1")
    with pytest.raises(KeyError):
        StoragePool.retrieve("f", "Saved", "t1")
    StoragePool.set(None, "f", "Saved", "t1", {"v": 2})
    assert StoragePool.retrieve("f", "Saved", "t1") == {"v": 2}
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        StoragePool.set_error(None, "f", "Saved", "t1", sys.exc_info())  # type: ignore[arg-type]
    with pytest.raises(KeyError):
        StoragePool.retrieve("f", "Saved", "t1")


def test_readers_racing_writers_always_end_on_the_last_value(configured: None) -> None:
    """Many readers and one writer on a few task ids: once the writer is done, every id reads its last value."""
    ids = [f"t{i}" for i in range(3)]
    for task_id in ids:
        StoragePool.set(None, "f", "Saved", task_id, {"v": -1})
    done = threading.Event()
    errors: list[BaseException] = []

    def read() -> None:
        try:
            while not done.is_set():
                for task_id in ids:
                    StoragePool.retrieve("f", "Saved", task_id)
                time.sleep(0.0001)  # a busy reader would hold the GIL for 5 ms at a time against the writer
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(2)]
    for reader in readers:
        reader.start()
    for value in range(200):
        for task_id in ids:
            StoragePool.set(None, "f", "Saved", task_id, {"v": value})
    done.set()
    for reader in readers:
        reader.join(10)
    assert not errors
    assert [StoragePool.retrieve("f", "Saved", t) for t in ids] == [{"v": 199}] * 3
