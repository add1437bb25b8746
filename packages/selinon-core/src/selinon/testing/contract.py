"""The storage contract, as a test suite that adapter authors subclass and run against their own server.

Each test stores under fresh task ids, so the suite can run against a shared, non-empty server. Two optional
fixtures turn on more checks: ``backend`` (the server seen through its own driver: one record per task id, no
connection left open) and ``secret_storage_factory`` (no secret in a ``repr()`` or an error).
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import pytest

from selinon.errors import SelinonMissingDataException
from selinon.storage import DataStorage
from selinon.testing.backend import Backend
from selinon.testing.services import exception_text, planted_secret

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

#: Task ids that differ only in ways a backend may ignore (a case-insensitive or padding collation, a
#: normalising file system): each must reach its own record.
LOOK_ALIKE_SUFFIXES = {
    "case": ("-ABC", "-abc"),
    "trailing space": ("-id", "-id "),
    "trailing tab": ("-id", "-id\t"),
    "leading space": ("-id", "- id"),
    "unicode normalisation": ("-caf\u00e9", "-cafe\u0301"),
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
    def backend(self) -> Backend | None:
        """Optional: the test server through its own driver (a :class:`~selinon.testing.Backend`)."""
        return None

    @pytest.fixture
    def secret_storage_factory(self) -> Callable[[str], DataStorage] | None:
        """Optional: a callable that makes an unconnected adapter with the given secret in its configuration,
        as its password (inside a URL if the adapter takes one), aimed at a port where no server listens."""
        return None

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

    def test_record_id_names_the_task_record(self, storage: DataStorage) -> None:
        """The record id is the same for every store of a task id (the record is replaced in place, never made
        anew) and differs between task ids."""
        tid, other = task_id(), task_id()
        first = storage.store(None, FLOW, TASK, tid, {"try": 1})
        assert first is not None
        assert storage.store(None, FLOW, TASK, tid, {"try": 2}) == first
        assert storage.store_error(None, FLOW, TASK, tid, _raise_and_capture()) == first
        assert storage.store(None, FLOW, TASK, tid, {"try": 3}) == first
        assert storage.store(None, FLOW, TASK, other, {"try": 1}) != first

    def test_one_record_per_task_id(self, storage: DataStorage, backend: Backend | None) -> None:
        """Counted on the server: stores, an error and stores again of one task id leave one record; a delete
        leaves none."""
        server = _needs(backend)
        tid = task_id()
        storage.store(None, FLOW, TASK, tid, {"try": 1})
        storage.store(None, FLOW, TASK, tid, {"try": 2})
        storage.store_error(None, FLOW, TASK, tid, _raise_and_capture())
        storage.store(None, FLOW, TASK, tid, {"try": 3})
        assert server.records(tid)[tid] == 1
        storage.delete(FLOW, TASK, tid)
        assert server.records(tid)[tid] == 0

    @pytest.mark.parametrize("suffixes", list(LOOK_ALIKE_SUFFIXES.values()), ids=list(LOOK_ALIKE_SUFFIXES))
    def test_look_alike_ids_are_separate(
        self, storage: DataStorage, backend: Backend | None, suffixes: tuple[str, str]
    ) -> None:
        base = task_id()
        first, second = (base + suffix for suffix in suffixes)
        storage.store(None, FLOW, TASK, first, "first")
        storage.store(None, FLOW, TASK, second, "second")
        assert storage.retrieve(FLOW, TASK, first) == "first"
        assert storage.retrieve(FLOW, TASK, second) == "second"
        if backend is not None:
            assert backend.records(base) == {first: 1, second: 1}
        storage.delete(FLOW, TASK, first)
        assert storage.retrieve(FLOW, TASK, second) == "second"
        with pytest.raises(SelinonMissingDataException):
            storage.retrieve(FLOW, TASK, first)

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

    # -- owner (optional) ------------------------------------------------------------------------------------

    def test_retrieve_owner_names_what_the_record_was_stored_with(self, storage: DataStorage) -> None:
        if type(storage).retrieve_owner is DataStorage.retrieve_owner:
            pytest.skip(f"{type(storage).__name__} does not implement the optional retrieve_owner()")
        stored, failed = task_id(), task_id()
        storage.store(None, FLOW, TASK, stored, {"value": 1})
        storage.store_error(None, "otherFlow", "otherTask", failed, _raise_and_capture())
        # Asked with any names (a caller checks what it gets): the names the record keeps, not the ones asked with.
        assert storage.retrieve_owner("", "someTask", stored) == (FLOW, TASK)
        assert storage.retrieve_owner(FLOW, TASK, failed) == ("otherFlow", "otherTask")
        storage.store(None, "thirdFlow", "thirdTask", stored, {"value": 2})
        assert storage.retrieve_owner(FLOW, TASK, stored) == ("thirdFlow", "thirdTask")
        with pytest.raises(SelinonMissingDataException):
            storage.retrieve_owner(FLOW, TASK, task_id())

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

    def test_secret_stays_out_of_repr_and_errors(
        self, secret_storage_factory: Callable[[str], DataStorage] | None
    ) -> None:
        if secret_storage_factory is None:
            pytest.skip("no `secret_storage_factory` fixture: give one to check reprs and errors for secrets")
        secret = planted_secret()
        adapter = secret_storage_factory(secret)
        assert secret not in repr(adapter) and secret not in str(adapter)
        with pytest.raises(Exception) as raised:  # whatever the driver raises
            adapter.connect()
        assert secret not in exception_text(raised.value), "the connect error shows the secret"
        assert secret not in repr(adapter)
        adapter.disconnect()

    def test_connections_open_once_and_close(
        self, storage_factory: Callable[[], DataStorage], backend: Backend | None
    ) -> None:
        """Counted in this process: connect() on a connected adapter opens nothing more, and after use from
        several threads disconnect() leaves no socket open."""
        server = _needs_connections(backend)
        before = _settled(server)
        adapter = storage_factory()
        adapter.connect()
        prefix = task_id()
        lock: AbstractContextManager[Any] = nullcontext() if adapter.thread_safe else threading.Lock()

        def work(n: int) -> None:
            with lock:
                adapter.store(None, FLOW, TASK, f"{prefix}-{n}", n)

        workers = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        connected = _settled(server)
        adapter.connect()
        adapter.connect()
        assert _at_most(server, connected), "connect() on a connected adapter opened connections"
        adapter.disconnect()
        assert _at_most(server, before), "disconnect() left connections open"

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


def _needs(backend: Backend | None) -> Backend:
    if backend is None:
        pytest.skip("no `backend` fixture: give one to let the suite look at the server itself")
    return backend


def _needs_connections(backend: Backend | None) -> Backend:
    server = _needs(backend)
    if server.open_connections() is None:
        pytest.skip("the backend cannot count this process's connections to the server")
    return server


def _settled(backend: Backend, timeout: float = 3.0) -> int:
    """This process's open connections to the server, once two counts 0.2 s apart agree (a driver may open a
    monitoring connection from a thread of its own)."""
    deadline = time.monotonic() + timeout
    count = backend.open_connections()
    while True:
        time.sleep(0.2)
        again = backend.open_connections()
        if again == count or time.monotonic() > deadline:
            assert again is not None
            return again
        count = again


def _at_most(backend: Backend, limit: int, timeout: float = 5.0) -> bool:
    """Whether this process's open connections to the server come down to ``limit`` within ``timeout`` (a
    driver may close its last sockets from a thread of its own, a moment after disconnect() returns)."""
    deadline = time.monotonic() + timeout
    while (backend.open_connections() or 0) > limit:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
