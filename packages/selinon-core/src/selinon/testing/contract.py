"""The storage contract, as a test suite that adapter authors subclass and run against their own server.

Each test stores under fresh task ids, so the suite can run against a shared, non-empty server.
"""

from __future__ import annotations

import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import pytest

from selinon.errors import SelinonMissingDataException
from selinon.storage import DataStorage

FLOW = "contractFlow"
TASK = "contractTask"

ROUND_TRIP_VALUES = {
    "nested": {"a": [1, 2, {"b": [True, False, None]}], "c": {"d": {"e": "f"}}},
    "unicode": {"text": "Příliš žluťoučký kůň 🐍 日本語", "ключ": "значение"},
    "big numbers": {"big": 2**63 + 11, "negative": -(2**70), "float": 3.141592653589793, "small": -2.5e-05},
    "empty dict": {},
    "empty list": [],
    "empty string": "",
    "none": None,
    "zero": 0,
    "false": False,
    "list of mixed": [1, "two", 3.5, None, [], {}],
    "deep": {"level": {"level": {"level": {"level": {"level": {"level": {"level": "deep"}}}}}}},
    "special keys": {"$dollar": 1, "dot.key": 2, "": 3, "with space": 4},
}

#: Results a JSON encoder would rewrite without a word (they would read back different): refused before writing.
REWRITTEN_VALUES = {
    "int key beside its string": {1: "a", "1": "b"},
    "bool key": {True: 1, "other": 2},
    "None key": {None: "x"},
    "float key": {1.5: "x"},
    "tuple": {"pair": (1, 2)},
    "NaN": {"value": float("nan")},
    "infinity": [1.0, float("inf")],
    "negative infinity": {"deep": [{"x": float("-inf")}]},
    "bytearray": {"raw": bytearray(b"abc")},
    "set": [1, {2, 3}],
    "object": {"bad": object()},
}

HOSTILE_TASK_IDS = ["../escape", "a/b/../../c", "*", "?", "[abc]", "line\nbreak", "x" * 1000, ".", "..", "%2E%2E"]


def task_id() -> str:
    return f"contract-{uuid.uuid4()}"


def _raise_and_capture() -> Any:
    try:
        raise ValueError("contract failure ✗")
    except ValueError:
        return sys.exc_info()


class StorageContract:
    """Subclass as ``TestSomething`` and provide the ``storage_factory`` fixture (a callable that makes a new,
    unconnected adapter for the test server). Class attributes tune the suite to the backend."""

    #: Whether the adapter refuses results that would not read back as stored (see :mod:`selinon.jsonpolicy`);
    #: an adapter that keeps Python objects as they are (pickles them, say) sets it to False.
    rejects_unserialisable: bool = True
    #: Size of the large payload test, in bytes.
    large_payload_bytes: int = 5 * 1024 * 1024
    threads: int = 8
    records_per_thread: int = 40

    @pytest.fixture
    def storage_factory(self) -> Callable[[], DataStorage]:
        raise NotImplementedError("provide a `storage_factory` fixture that returns a callable making the adapter")

    @pytest.fixture
    def storage(self, storage_factory: Callable[[], DataStorage]) -> Iterator[DataStorage]:
        adapter = storage_factory()
        adapter.connect()
        try:
            yield adapter
        finally:
            adapter.disconnect()

    # -- round trips -----------------------------------------------------------------------------------------

    @pytest.mark.parametrize("value", list(ROUND_TRIP_VALUES.values()), ids=list(ROUND_TRIP_VALUES))
    def test_round_trip(self, storage: DataStorage, value: Any) -> None:
        tid = task_id()
        record_id = storage.store({"arg": 1}, FLOW, TASK, tid, value)
        assert record_id is not None
        assert storage.retrieve(FLOW, TASK, tid) == value

    def test_large_payload(self, storage: DataStorage) -> None:
        tid = task_id()
        payload = {"blob": "x" * self.large_payload_bytes, "tail": [1, 2, 3]}
        storage.store(None, FLOW, TASK, tid, payload)
        assert storage.retrieve(FLOW, TASK, tid) == payload

    # -- keys ------------------------------------------------------------------------------------------------

    def test_store_again_replaces(self, storage: DataStorage) -> None:
        tid = task_id()
        storage.store(None, FLOW, TASK, tid, {"try": 1})
        storage.store(None, FLOW, TASK, tid, {"try": 2})
        assert storage.retrieve(FLOW, TASK, tid) == {"try": 2}

    def test_records_are_separate(self, storage: DataStorage) -> None:
        first, second = task_id(), task_id()
        storage.store(None, FLOW, TASK, first, "first")
        storage.store(None, FLOW, TASK, second, "second")
        assert storage.retrieve(FLOW, TASK, first) == "first"
        assert storage.retrieve(FLOW, TASK, second) == "second"

    def test_missing_record(self, storage: DataStorage) -> None:
        with pytest.raises(SelinonMissingDataException):
            storage.retrieve(FLOW, TASK, task_id())

    def test_delete(self, storage: DataStorage) -> None:
        tid, other = task_id(), task_id()
        storage.store(None, FLOW, TASK, tid, [1])
        storage.store(None, FLOW, TASK, other, [2])
        storage.delete(FLOW, TASK, tid)
        with pytest.raises(SelinonMissingDataException):
            storage.retrieve(FLOW, TASK, tid)
        assert storage.retrieve(FLOW, TASK, other) == [2]

    def test_delete_missing(self, storage: DataStorage) -> None:
        with pytest.raises(SelinonMissingDataException):
            storage.delete(FLOW, TASK, task_id())

    @pytest.mark.parametrize("hostile", HOSTILE_TASK_IDS, ids=lambda s: repr(s[:20]))
    def test_hostile_task_id_is_isolated(self, storage: DataStorage, hostile: str) -> None:
        """A task id that looks like a path, a pattern or a wildcard reaches its own record and nothing else."""
        neighbour = task_id()
        storage.store(None, FLOW, TASK, neighbour, "neighbour")
        unique = f"{hostile}{uuid.uuid4()}"
        storage.store(None, FLOW, TASK, unique, "hostile")
        assert storage.retrieve(FLOW, TASK, unique) == "hostile"
        with pytest.raises(SelinonMissingDataException):
            storage.retrieve(FLOW, TASK, hostile)
        with pytest.raises(SelinonMissingDataException):
            storage.delete(FLOW, TASK, hostile)
        storage.delete(FLOW, TASK, unique)
        assert storage.retrieve(FLOW, TASK, neighbour) == "neighbour"

    def test_nul_in_task_id_is_refused_or_isolated(self, storage: DataStorage) -> None:
        neighbour = task_id()
        storage.store(None, FLOW, TASK, neighbour, "neighbour")
        hostile = f"{neighbour}\x00tail"
        try:
            storage.store(None, FLOW, TASK, hostile, "hostile")
        except Exception:
            pass
        else:
            assert storage.retrieve(FLOW, TASK, hostile) == "hostile"
        assert storage.retrieve(FLOW, TASK, neighbour) == "neighbour"

    # -- bad results -----------------------------------------------------------------------------------------

    @pytest.mark.parametrize("value", list(REWRITTEN_VALUES.values()), ids=list(REWRITTEN_VALUES))
    def test_unserialisable_result_changes_nothing(self, storage: DataStorage, value: Any) -> None:
        """A result that would read back different is refused, and the record stored before is kept."""
        if not self.rejects_unserialisable:
            pytest.skip("this adapter keeps Python objects as they are")
        tid = task_id()
        storage.store(None, FLOW, TASK, tid, {"kept": True})
        with pytest.raises(Exception) as raised:
            storage.store(None, FLOW, TASK, tid, value)
        assert not isinstance(raised.value, SelinonMissingDataException)
        assert storage.retrieve(FLOW, TASK, tid) == {"kept": True}

    def test_unserialisable_result_creates_nothing(self, storage: DataStorage) -> None:
        if not self.rejects_unserialisable:
            pytest.skip("this adapter keeps Python objects as they are")
        tid = task_id()
        with pytest.raises(Exception):  # noqa: B017
            storage.store(None, FLOW, TASK, tid, [1, {2, 3}])
        with pytest.raises(SelinonMissingDataException):
            storage.retrieve(FLOW, TASK, tid)

    # -- errors ----------------------------------------------------------------------------------------------

    def test_store_error_is_readable(self, storage: DataStorage) -> None:
        tid = task_id()
        storage.store_error({"arg": 1}, FLOW, TASK, tid, _raise_and_capture())
        error = storage.retrieve_error(FLOW, TASK, tid)
        assert error["type"] == "builtins.ValueError"
        assert error["message"] == "contract failure ✗"
        assert "_raise_and_capture" in error["traceback"]
        assert "ValueError: contract failure ✗" in error["traceback"]

    def test_failed_task_has_no_result(self, storage: DataStorage) -> None:
        tid = task_id()
        storage.store_error(None, FLOW, TASK, tid, _raise_and_capture())
        with pytest.raises(SelinonMissingDataException):
            storage.retrieve(FLOW, TASK, tid)

    def test_result_after_retry_replaces_error(self, storage: DataStorage) -> None:
        tid = task_id()
        storage.store_error(None, FLOW, TASK, tid, _raise_and_capture())
        storage.store(None, FLOW, TASK, tid, {"retried": "ok"})
        assert storage.retrieve(FLOW, TASK, tid) == {"retried": "ok"}
        with pytest.raises(SelinonMissingDataException):
            storage.retrieve_error(FLOW, TASK, tid)

    def test_retrieve_error_missing(self, storage: DataStorage) -> None:
        with pytest.raises(SelinonMissingDataException):
            storage.retrieve_error(FLOW, TASK, task_id())

    # -- lifecycle -------------------------------------------------------------------------------------------

    def test_lifecycle(self, storage_factory: Callable[[], DataStorage]) -> None:
        adapter = storage_factory()
        assert not adapter.is_connected()
        adapter.disconnect()  # never connected: a no-op
        adapter.connect()
        adapter.connect()  # idempotent
        assert adapter.is_connected()
        tid = task_id()
        adapter.store(None, FLOW, TASK, tid, "kept")
        adapter.disconnect()
        adapter.disconnect()
        assert not adapter.is_connected()
        adapter.connect()
        assert adapter.retrieve(FLOW, TASK, tid) == "kept"
        adapter.disconnect()

    def test_repr_is_safe(self, storage: DataStorage) -> None:
        text = repr(storage)
        assert type(storage).__name__ in text
        assert "password" not in text.lower()

    # -- concurrency -----------------------------------------------------------------------------------------

    def test_many_threads(self, storage: DataStorage) -> None:
        """Nothing lost when many threads store at once (serialised, as the pool does, unless thread-safe)."""
        prefix = task_id()
        errors: list[BaseException] = []
        lock: AbstractContextManager[Any] = nullcontext() if storage.thread_safe else threading.Lock()

        def work(thread: int) -> None:
            try:
                for n in range(self.records_per_thread):
                    tid = f"{prefix}-{thread}-{n}"
                    with lock:
                        storage.store(None, FLOW, TASK, tid, {"thread": thread, "n": n})
                    with lock:
                        assert storage.retrieve(FLOW, TASK, tid) == {"thread": thread, "n": n}
            except BaseException as exc:
                errors.append(exc)

        workers = [threading.Thread(target=work, args=(t,)) for t in range(self.threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert not errors, errors[:3]
        for thread in range(self.threads):
            for n in range(self.records_per_thread):
                assert storage.retrieve(FLOW, TASK, f"{prefix}-{thread}-{n}") == {"thread": thread, "n": n}
