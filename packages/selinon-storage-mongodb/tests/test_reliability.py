"""Reliability of the MongoDB adapter through StoragePool, against a real (SecantusDB or MongoDB) server.

- The test kit's fault drills, on a SecantusDB of this module's own: connections cut through a TcpProxy while 8
  threads store and read back, a server refusing or silent at connect(), forked children, 10,000 records from 8
  threads. (Refused credentials: SecantusDB checks them only once restarted with users provisioned; not drilled.)
- The server restarted on its storage directory (it reopens its data intact) while 8 threads store and read back:
  every call succeeds after the pool's bounded retry or raises a StorageError naming the storage; counted through
  pymongo afterwards, every record a call reported stored is there once, with its content.
- Too large: a result over MongoDB's 16 MB document limit fails before anything is written (not retried); the
  previous record of that task id is unchanged.
- Timeouts: ``socket_timeout`` bounds every operation on an open connection; which errors the pool retries
  (connection-level: pymongo's AutoReconnect family) and which it does not (authentication, server refusals,
  too large).

The proxy sits in front of a replica-set member (SecantusDB says it is one), so the adapter reaches it with
``directConnection=true`` in its ``uri``: without it pymongo would discover the member's own address and go
around the proxy.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import URI_ENV, MongoBackend, Server, require_secantus, secantus_argv
from pymongo import MongoClient
from pymongo.errors import (
    AutoReconnect,
    DocumentTooLarge,
    NetworkTimeout,
    NotPrimaryError,
    OperationFailure,
    ServerSelectionTimeoutError,
    WriteError,
)
from selinon_storage_mongodb import MongoDB

from selinon import StorageError, StoragePool
from selinon.testing import ServerProcess, StorageDrills
from selinon.testing.load import FLOW, TASK, Outcome, StorageEvents, hammer, result_for, storage_events

STORAGE = "ReliableMongo"
#: Short but realistic: a lost connection is retried for up to 20 s.
RETRY = {"attempts": 8, "deadline": 20, "backoff": 0.05, "max_backoff": 1.0}
THREADS = 8
Client = MongoClient[dict[str, Any]]


events = pytest.fixture(storage_events, name="events")


@pytest.fixture
def quiet_driver(caplog: pytest.LogCaptureFixture) -> None:
    """pymongo logs every command at DEBUG level: thousands of calls would fill the test report."""
    caplog.set_level(logging.INFO, logger="pymongo")


def configure(tmp_path: Path, configuration: dict[str, Any], retry: dict[str, Any] | None = None) -> None:
    entry: dict[str, Any] = {"name": STORAGE, "classname": "MongoDB", "configuration": configuration}
    entry["retry"] = retry or RETRY
    path = tmp_path / f"nodes-{uuid.uuid4().hex[:8]}.yaml"
    path.write_text(json.dumps({"storages": [entry], "tasks": [{"name": TASK, "storage": STORAGE}]}))  # JSON is YAML
    StoragePool.configure(path)


def check_errors(outcome: Outcome) -> None:
    """A call may fail only as a StorageError naming the storage, raised after the pool retried it."""
    for error in outcome.errors:
        assert isinstance(error, StorageError), repr(error)
        assert f"storage {STORAGE!r} (MongoDB)" in str(error), str(error)
        assert " attempts in " in str(error), f"failed without being retried: {error}"


def check_through_driver(client: Client, db_name: str, collection: str, outcome: Outcome, records: int) -> None:
    """Counted with pymongo: every task id once, every record reported stored present with its content."""
    documents = list(client[db_name][collection].find({}, {"_id": False, "task_id": True, "result": True}))
    counts = Counter(document["task_id"] for document in documents)
    assert not [t for t, n in counts.items() if n != 1], "task ids stored more than once"
    assert len(documents) <= records
    found = {document["task_id"]: document.get("result") for document in documents}
    missing = [t for t in outcome.stored if t not in found]
    wrong = [t for t in outcome.stored if t in found and found[t] != result_for(t)]
    assert not missing, f"{len(missing)} of {len(outcome.stored)} records reported stored are missing: {missing[:5]}"
    assert not wrong, f"{len(wrong)} records have the wrong content: {wrong[:5]}"


def report(what: str, outcome: Outcome, events: StorageEvents, **extra: Any) -> None:
    print(
        f"{what}: {len(outcome.stored)} stored and read back, {len(outcome.errors)} errors, "
        f"{events['retry']} retries, {outcome.seconds:.1f}s",
        *(f"{k}={v}" for k, v in extra.items()),
    )
    for error in sorted({str(e) for e in outcome.errors})[:5]:
        print(f"  error: {error[:300]}")


# -- the test kit's drills -------------------------------------------------------------------------------------


def _secantus(server: Server, tmp_path_factory: pytest.TempPathFactory, what: str) -> Iterator[Server]:
    if server.uri:
        pytest.skip(f"{URI_ENV} is set: the drills need the server as host and port, not a URI")
    log = tmp_path_factory.mktemp(f"secantus-{what}") / "server.log"
    with ServerProcess(secantus_argv("--storage-path", ":memory:"), "SecantusDB", log=log) as process:
        yield Server(host=process.host, port=process.port, process=process)


@pytest.fixture(scope="module")
def drill_server(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A SecantusDB of the drills' own (an external server, SELINON_TEST_MONGODB_URI, cannot stand behind the
    proxy)."""
    yield from _secantus(server, tmp_path_factory, "drills")


@pytest.fixture(scope="module")
def load_server(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Another for the load drill: SecantusDB slows down as it fills (10,000 records take 30 s on a fresh one,
    60-80 s on one that other tests used), and so do the drills after it."""
    yield from _secantus(server, tmp_path_factory, "load")


class TestMongoDBDrills(StorageDrills):
    classname = "MongoDB"
    read_timeout = 10  # configuration() sets socket_timeout to it

    @pytest.fixture(autouse=True)
    def collection(self, request: pytest.FixtureRequest, quiet_driver: None) -> Iterator[None]:
        load = request.function.__name__ == "test_load_through_the_pool"
        self.server: Server = request.getfixturevalue("load_server" if load else "drill_server")
        self.db_name, self.collection_name = self.server.db_name, f"drill_{uuid.uuid4().hex[:12]}"
        yield
        with MongoClient(self.server.client_uri, serverSelectionTimeoutMS=10000) as client:
            client[self.db_name].drop_collection(self.collection_name)

    @pytest.fixture
    def server_address(self) -> tuple[str, int]:
        return self.server.host, self.server.port

    @pytest.fixture
    def backend(self) -> Iterator[MongoBackend]:
        with MongoClient(self.server.client_uri, serverSelectionTimeoutMS=10000) as client:
            yield MongoBackend(self.server, client, self.collection_name)

    def configuration(self, host: str, port: int, timeout: float) -> dict[str, Any]:
        # After a reset, pymongo waits for its monitor's next heartbeat (10 s by default) before using the server
        # again: a 0.5 s heartbeat keeps the cut drill short. socket_timeout: a reply lost in a reset (seen once
        # in ~10 runs on a shared machine) costs 10 s, not 60 s.
        return {
            "db_name": self.db_name, "collection_name": self.collection_name, "connect_timeout": timeout,
            "uri": f"mongodb://{host}:{port}/?directConnection=true&heartbeatFrequencyMS=500", "socket_timeout": 10,
        }  # fmt: skip


@pytest.fixture(scope="module")
def disk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A SecantusDB of this module's own, on a storage directory, so that a restart keeps its data."""
    require_secantus()
    data = tmp_path_factory.mktemp("secantus-data")
    argv = secantus_argv("--storage-path", str(data))
    with ServerProcess(argv, "SecantusDB on a storage directory", log=data.parent / "secantus-disk.log") as process:
        yield process


def test_server_restarted_while_threads_store(
    tmp_path: Path, disk_server: ServerProcess, events: StorageEvents, quiet_driver: None
) -> None:
    """The server stopped and started again (on its storage directory) while 8 threads store and read back.

    The restart takes longer than pymongo's own retry waits (``connect_timeout``: 1 s), so calls in flight are
    carried through by the pool's retry policy.
    """
    db_name, collection, records = "selinon_test", f"restart_{uuid.uuid4().hex[:12]}", 2000
    configure(
        tmp_path,
        {"db_name": db_name, "collection_name": collection, "host": "127.0.0.1", "port": disk_server.port,
         "connect_timeout": 1, "socket_timeout": 10},
    )  # fmt: skip
    assert disk_server.process is not None
    pids = [disk_server.process.pid]

    def restart() -> None:
        # Down until the pool has retried calls (pymongo alone may carry a short restart), then up again.
        disk_server.stop()
        deadline = time.monotonic() + 30
        while events["retry"] < THREADS and time.monotonic() < deadline:
            time.sleep(0.05)
        disk_server.start()
        assert disk_server.process is not None
        pids.append(disk_server.process.pid)

    outcome = hammer("restart", records, THREADS, during=restart)
    report("restart", outcome, events, pids=pids)
    assert len(pids) == 2 and pids[0] != pids[1], "the server was not restarted"
    check_errors(outcome)
    assert len(outcome.stored) + len(outcome.errors) == records
    assert events["retry"] > 0, "no call was retried: the restart hit nothing"
    with MongoClient(f"mongodb://127.0.0.1:{disk_server.port}/", serverSelectionTimeoutMS=10000) as client:
        check_through_driver(client, db_name, collection, outcome, records)
        client[db_name].drop_collection(collection)


# -- too large -------------------------------------------------------------------------------------------------

MB = 1024 * 1024


@pytest.mark.parametrize(
    "size",
    [17 * MB, 16 * MB + 1024],
    ids=["refused by pymongo", "refused by the server"],
)
def test_result_too_large_for_a_document(
    tmp_path: Path,
    server: Server,
    client: Client,
    collection_name: str,
    events: StorageEvents,
    quiet_driver: None,
    size: int,
) -> None:
    """Over 16 MB: a StorageError that says so, at once (no retry); the previous record is unchanged."""
    configure(tmp_path, {"db_name": server.db_name, "collection_name": collection_name, **server.options})
    task_id = f"too-large-{uuid.uuid4()}"
    StoragePool.set({"n": 1}, FLOW, TASK, task_id, "the previous result")
    records = client[server.db_name][collection_name]
    before = records.find_one({"task_id": task_id})
    with pytest.raises(StorageError) as raised:
        StoragePool.set({"n": 2}, FLOW, TASK, task_id, "x" * size)
    message = str(raised.value)
    assert message.startswith(f"storage {STORAGE!r} (MongoDB): store failed: "), message[:300]
    assert "too large for one MongoDB document" in message, message[:300]
    assert len(message) < 1000 and "xxxxxxxx" not in message
    assert events["retry"] == 0
    assert records.count_documents({"task_id": task_id}) == 1
    assert records.find_one({"task_id": task_id}) == before
    assert StoragePool.retrieve(FLOW, TASK, task_id) == "the previous result"


def test_big_result_under_the_limit_is_stored(
    tmp_path: Path, server: Server, collection_name: str, quiet_driver: None
) -> None:
    """The limit is MongoDB's, not the adapter's: 15 MB still fits."""
    configure(tmp_path, {"db_name": server.db_name, "collection_name": collection_name, **server.options})
    task_id = f"big-{uuid.uuid4()}"
    StoragePool.set(None, FLOW, TASK, task_id, "y" * (15 * MB))
    assert len(StoragePool.retrieve(FLOW, TASK, task_id)) == 15 * MB


# -- timeouts and what the pool retries --------------------------------------------------------------------------


def test_socket_timeout_bounds_every_operation() -> None:
    """A server that stops answering on an open connection fails the call after ``socket_timeout`` with a
    NetworkTimeout, which the pool retries (an AutoReconnect); the default is 60 s."""
    assert MongoDB(db_name="d", collection_name="c")._client_options()["socketTimeoutMS"] == 60_000
    adapter = MongoDB(db_name="d", collection_name="c", socket_timeout="2.5")  # an expanded {ENV} reference
    assert adapter._client_options()["socketTimeoutMS"] == 2500
    assert issubclass(NetworkTimeout, MongoDB.transient_errors)
    with pytest.raises(ValueError, match="`socket_timeout` must be a number of seconds greater than 0"):
        MongoDB(db_name="d", collection_name="c", socket_timeout=0)


@pytest.mark.parametrize(
    "error",
    [AutoReconnect("lost"), NetworkTimeout("slow"), ServerSelectionTimeoutError("down"), NotPrimaryError("stepping")],
)
def test_connection_level_errors_are_transient(error: Exception) -> None:
    assert isinstance(error, MongoDB.transient_errors)


@pytest.mark.parametrize(
    "error",
    [OperationFailure("Authentication failed", 18), DocumentTooLarge("big"), WriteError("bad", 2), StorageError("x")],
)
def test_permanent_errors_are_not_transient(error: Exception) -> None:
    assert not isinstance(error, MongoDB.transient_errors)
