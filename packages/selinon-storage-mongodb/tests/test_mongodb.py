"""What the MongoDB adapter adds to the contract: its options, its record layout, the unique index that keeps one
document per task id, Selinon 1.x configurations, the command line and secrets (forked children are a drill of
test_reliability.py)."""

from __future__ import annotations

import datetime
import functools
import json
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from bson import ObjectId
from conftest import MakeStorage, Server
from pymongo import MongoClient, monitoring
from pymongo.errors import DuplicateKeyError, OperationFailure
from selinon_storage_mongodb import MongoDB
from selinon_storage_mongodb.storage import INDEX_NAME

from selinon import SelinonMissingDataException, StorageError, StoragePool, registry
from selinon.config import load
from selinon.records import ForeignRecord
from selinon.registry import LegacyImportWarning
from selinon.testing import free_port, planted_secret

FLOW, TASK = "mongoFlow", "mongoTask"
Client = MongoClient[dict[str, Any]]


def tid() -> str:
    return f"mongo-{uuid.uuid4()}"


@pytest.fixture
def storage(make_storage: MakeStorage) -> Any:
    adapter = make_storage()
    adapter.connect()
    yield adapter
    adapter.disconnect()


Earlier = Callable[..., tuple[MongoDB, str]]


@pytest.fixture
def earlier(make_storage: MakeStorage, client: Client, server: Server, new_collection: Any) -> Iterator[Earlier]:
    """``earlier(*documents)``: a new collection that earlier versions wrote ``documents`` to (0.2.0 and 0.1.0,
    which wrote ``stored_at``, made the unique index on ``task_id`` when they connected; Selinon 1.x made none),
    and an adapter of this version connected to it after them, as after an upgrade; with the collection's name."""
    adapters: list[MongoDB] = []

    def make(*older: dict[str, Any]) -> tuple[MongoDB, str]:
        name = new_collection()
        records = client[server.db_name][name]
        if any("stored_at" in document for document in older):
            records.create_index("task_id", unique=True, name=INDEX_NAME)
        if older:
            records.insert_many(older)
        adapter = make_storage(collection_name=name)
        adapter.connect()
        adapters.append(adapter)
        return adapter, name

    yield make
    for adapter in adapters:
        adapter.disconnect()


def at_once(*work: Callable[[], None]) -> list[BaseException]:
    """Each callable in a thread of its own, all let go at the same moment: what they raised."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(work))

    def run(one: Callable[[], None]) -> None:
        try:
            barrier.wait()
            one()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(one,)) for one in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def documents(client: Client, server: Server, collection: str, task_id: str) -> list[dict[str, Any]]:
    """Every document of the task id: keyed by it (this version's) or holding it in `task_id` (every version's)."""
    return list(client[server.db_name][collection].find({"$or": [{"_id": task_id}, {"task_id": task_id}]}))


def _raise() -> Any:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        return sys.exc_info()


# -- options ---------------------------------------------------------------------------------------------------


def test_defaults() -> None:
    adapter = MongoDB(db_name="results", collection_name="tasks")
    assert adapter.endpoint == "localhost:27017"
    assert adapter.connect_timeout == 5
    assert not adapter.is_connected()
    assert repr(adapter) == "<MongoDB localhost:27017 results.tasks connected=False>"


@pytest.mark.parametrize("missing", ["db_name", "collection_name"])
def test_db_and_collection_are_required(missing: str) -> None:
    options = {"db_name": "results", "collection_name": "tasks"}
    del options[missing]
    with pytest.raises(TypeError, match=missing):
        MongoDB(**options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"db_name": ""}, "`db_name` must be a non-empty string"),
        ({"db_name": "a.b"}, "not a MongoDB database name"),
        ({"collection_name": "system.users"}, "not a collection MongoDB lets one write"),
        ({"collection_name": 3}, "`collection_name` must be a non-empty string"),
        ({"port": "abc"}, "`port` must be a whole number"),
        ({"port": 0}, "`port` must be a whole number greater than 0"),
        ({"port": True}, "`port` must be a whole number"),
        ({"port": 70000}, "at most 65535"),
        ({"connect_timeout": -1}, "`connect_timeout` must be a number of seconds greater than 0"),
        ({"connect_timeout": "soon"}, "`connect_timeout` must be a number of seconds"),
        ({"tls": "yes"}, "`tls` must be true or false"),
        ({"password": "pw"}, "`password` is given without `username`"),
        ({"uri": "http://example.com"}, "`uri` must start with mongodb:// or mongodb\\+srv://"),
        ({"uri": "mongodb://h1:notaport/"}, "`uri` is not a valid MongoDB URI"),
        ({"uri": "mongodb://h1/?noSuchOption=1"}, "`uri` is not a valid MongoDB URI"),
        ({"uri": "mongodb+srv://cluster.example.net:27017/"}, "exactly one host name, without a port"),
        ({"uri": "mongodb://h1/", "host": "h2"}, "either as `uri` or as `host` and `port`, not both"),
        ({"uri": "mongodb://h1/", "port": 27018}, "either as `uri` or as `host` and `port`, not both"),
    ],
)
def test_bad_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MongoDB(**{"db_name": "results", "collection_name": "tasks", **options})


def test_numbers_from_environment_strings() -> None:
    """`{MONGODB_PORT}` expands to a string: numeric strings are accepted."""
    adapter = MongoDB(
        db_name="results", collection_name="tasks", host="db.example", port="27018", connect_timeout="2.5"
    )
    assert (adapter.port, adapter.connect_timeout, adapter.endpoint) == (27018, 2.5, "db.example:27018")


def test_uri_endpoints_carry_no_credentials() -> None:
    secret = planted_secret()
    plain = MongoDB(db_name="d", collection_name="c", uri=f"mongodb://bob:{secret}@h1:27018,h2/admin?replicaSet=rs0")
    assert plain.endpoint == "h1:27018,h2:27017"
    srv = MongoDB(db_name="d", collection_name="c", uri=f"mongodb+srv://bob:{secret}@cluster0.example.net/admin")
    assert srv.endpoint == "cluster0.example.net (DNS SRV)"  # parsed without a DNS lookup
    for adapter in (plain, srv):
        assert secret not in repr(adapter) and "bob" not in repr(adapter)


def test_bad_uri_error_hides_password() -> None:
    secret = planted_secret()
    with pytest.raises(ValueError) as raised:
        MongoDB(db_name="d", collection_name="c", uri=f"mongodb://bob:{secret}@h1:port/")
    assert secret not in str(raised.value)


def test_host_and_port(storage: MongoDB, server: Server) -> None:
    if server.uri:
        pytest.skip("the server is given as a URI")
    assert storage.endpoint == f"127.0.0.1:{server.port}"
    storage.store(None, FLOW, TASK, key := tid(), "via host and port")
    assert storage.retrieve(FLOW, TASK, key) == "via host and port"


def test_uri_option(make_storage: MakeStorage, server: Server) -> None:
    adapter = make_storage(host=None, port=None, uri=server.client_uri)
    adapter.connect()
    try:
        adapter.store(None, FLOW, TASK, key := tid(), "via uri")
        assert adapter.retrieve(FLOW, TASK, key) == "via uri"
    finally:
        adapter.disconnect()


def test_selinon1_host_holding_a_uri(make_storage: MakeStorage, server: Server) -> None:
    """Selinon 1.x passed `host` to MongoClient, so a URI there worked; it still does, `port` beside it too."""
    if server.uri:
        pytest.skip("the server is given as a URI")
    adapter = make_storage(host="mongodb://127.0.0.1/", port=server.port)
    assert adapter.endpoint == f"127.0.0.1:{server.port}"
    adapter.connect()
    try:
        adapter.store(None, FLOW, TASK, key := tid(), "via a URI in host")
        assert adapter.retrieve(FLOW, TASK, key) == "via a URI in host"
    finally:
        adapter.disconnect()


@pytest.fixture
def user(server: Server, client: Client) -> Any:
    """A user that exists in a database of its own, so `auth_source` decides whether the login works."""
    name, password, database = f"u{uuid.uuid4().hex[:8]}", planted_secret(), f"auth_{uuid.uuid4().hex[:8]}"
    try:
        client[database].command("createUser", name, pwd=password, roles=[{"role": "readWrite", "db": server.db_name}])
    except OperationFailure as exc:
        pytest.skip(f"the test server does not let this client create users: {exc.code}")
    yield name, password, database
    client[database].command("dropUser", name)


def test_username_password_auth_source(make_storage: MakeStorage, server: Server, user: Any) -> None:
    if server.has_credentials:
        pytest.skip("SELINON_TEST_MONGODB_URI holds credentials already")
    name, password, database = user
    adapter = make_storage(username=name, password=password, auth_source=database)
    adapter.connect()
    try:
        adapter.store(None, FLOW, TASK, key := tid(), "authenticated")
        assert adapter.retrieve(FLOW, TASK, key) == "authenticated"
    finally:
        adapter.disconnect()
    elsewhere = make_storage(username=name, password=password, connect_timeout=2)  # looks for the user in admin
    with pytest.raises(
        StorageError, match="cannot connect to MongoDB at .*OperationFailure: [Aa]uthentication failed$"
    ) as raised:
        elsewhere.connect()
    assert password not in str(raised.value)
    assert not elsewhere.is_connected()


def test_tls_against_a_plain_server_fails_fast(make_storage: MakeStorage, server: Server) -> None:
    if server.uri:
        pytest.skip("the server is given as a URI")
    adapter = make_storage(tls=True, connect_timeout=1)
    start = time.monotonic()
    with pytest.raises(StorageError, match=f"cannot connect to MongoDB at 127.0.0.1:{server.port}"):
        adapter.connect()
    assert time.monotonic() - start < 5


def test_tls_with_ca_file(tmp_path: Path, new_collection: Any) -> None:
    """`tls` and `tls_ca_file` reach a server that speaks only TLS (a SecantusDB of the test's own)."""
    from conftest import require_secantus, secantus_argv

    from selinon.testing import ServerProcess

    require_secantus()
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    argv = secantus_argv("--storage-path", ":memory:", "--tls-cert-file", str(cert), "--tls-key-file", str(key))
    with ServerProcess(argv, "SecantusDB with TLS", log=tmp_path / "tls.log") as tls_server:
        options = {"db_name": "selinon_test", "collection_name": new_collection(), "port": tls_server.port}
        adapter = MongoDB(host="127.0.0.1", tls=True, tls_ca_file=str(ca_file), **options)
        adapter.connect()
        try:
            adapter.store(None, FLOW, TASK, task := tid(), "over TLS")
            assert adapter.retrieve(FLOW, TASK, task) == "over TLS"
        finally:
            adapter.disconnect()
        with pytest.raises(StorageError, match="cannot connect"):  # no CA: the server's certificate is refused
            MongoDB(host="127.0.0.1", tls=True, connect_timeout=1, **options).connect()


# -- connection ------------------------------------------------------------------------------------------------


def test_closed_port_fails_fast_without_password() -> None:
    secret, port = planted_secret(), free_port()
    adapter = MongoDB(
        db_name="d",
        collection_name="c",
        host="127.0.0.1",
        port=port,
        username="bob",
        password=secret,
        connect_timeout=1,
    )
    start = time.monotonic()
    with pytest.raises(StorageError) as raised:
        adapter.connect()
    assert time.monotonic() - start < 5
    message = str(raised.value)
    assert message.startswith(f"cannot connect to MongoDB at 127.0.0.1:{port} (collection d.c): ")
    assert "ServerSelectionTimeoutError" in message and "Topology" not in message
    assert secret not in message and secret not in repr(adapter)
    assert not adapter.is_connected()


def test_uri_with_password_at_closed_port() -> None:
    secret, port = planted_secret(), free_port()
    adapter = MongoDB(
        db_name="d", collection_name="c", uri=f"mongodb://bob:{secret}@127.0.0.1:{port}/?appname=x", connect_timeout=1
    )
    start = time.monotonic()
    with pytest.raises(StorageError, match=f"cannot connect to MongoDB at 127.0.0.1:{port}") as raised:
        adapter.connect()
    assert time.monotonic() - start < 5
    assert secret not in str(raised.value) and secret not in repr(adapter)
    assert raised.value.__cause__ is None and raised.value.__context__ is not None  # the driver's error is not shown


def test_not_connected(make_storage: MakeStorage) -> None:
    with pytest.raises(StorageError, match="not connected"):
        make_storage().retrieve(FLOW, TASK, tid())


# -- records ---------------------------------------------------------------------------------------------------


def test_a_new_collection_has_no_index_but_the_id_one(earlier: Earlier, client: Client, server: Server) -> None:
    """This version's documents are unique by `_id`: a second index would cost every write."""
    storage, name = earlier()
    storage.store(None, FLOW, TASK, tid(), "stored")
    assert list(client[server.db_name][name].index_information()) == ["_id_"]


def test_a_collection_of_selinon1_documents_gets_the_unique_index(
    earlier: Earlier, client: Client, server: Server
) -> None:
    _, name = earlier(_older("Selinon 1.x", tid(), "old"))
    index = client[server.db_name][name].index_information()[INDEX_NAME]
    assert index["unique"] is True
    assert list(index["key"]) == [("task_id", 1)]


def test_documents_of_a_0_2_0_worker_that_connected_later_are_found(
    earlier: Earlier, client: Client, server: Server
) -> None:
    """A rollback: a 0.2.0 worker connects after this adapter (making its unique index) and writes a document."""
    storage, name = earlier()
    with pytest.raises(SelinonMissingDataException):
        storage.retrieve(FLOW, TASK, tid())
    records, key = client[server.db_name][name], tid()
    records.create_index("task_id", unique=True, name=INDEX_NAME)
    older = _older("0.2.0", key, "old")
    records.insert_one(older)
    assert storage.retrieve(FLOW, TASK, key) == "old"
    assert storage.store(None, FLOW, TASK, key, "new") == str(older["_id"])
    assert [d["result"] for d in documents(client, server, name, key)] == ["new"]


def test_storing_again_leaves_one_document(
    storage: MongoDB, client: Client, server: Server, collection_name: str
) -> None:
    key = tid()
    first = storage.store({"try": 1}, FLOW, TASK, key, "first")
    again = storage.store({"try": 2}, FLOW, TASK, key, "second")
    assert len(documents(client, server, collection_name, key)) == 1
    assert first == again == key  # the record id is the document's _id: the task id
    error_id = storage.store_error(None, FLOW, TASK, key, _raise())
    assert len(documents(client, server, collection_name, key)) == 1
    assert error_id == first


def test_concurrent_first_stores_leave_one_document(
    storage: MongoDB, client: Client, server: Server, collection_name: str
) -> None:
    """Redelivered copies of one task storing at the same moment: one document, whoever wins."""
    keys = [tid() for _ in range(20)]

    def work(worker: int) -> None:
        for key in keys:
            storage.store(None, FLOW, TASK, key, worker)

    errors = at_once(*[functools.partial(work, n) for n in range(6)])
    assert not errors, errors[:3]
    for key in keys:
        assert len(documents(client, server, collection_name, key)) == 1


def test_record_layout(storage: MongoDB, client: Client, server: Server, collection_name: str) -> None:
    key = tid()
    record_id = storage.store({"url": "https://x"}, FLOW, TASK, key, {"score": 2**40, "tags": ["a"]})
    (document,) = documents(client, server, collection_name, key)
    assert document.pop("_id") == key == record_id  # keyed by the task id: found by its _id index
    assert document.pop("stored_at") is not None
    assert document == {
        "task_id": key,
        "selinon_record": 1,
        "flow_name": FLOW,
        "task_name": TASK,
        "node_args": {"url": "https://x"},
        "result": {"score": 2**40, "tags": ["a"]},
    }
    assert type(storage.retrieve(FLOW, TASK, key)["score"]) is int  # not bson's Int64


def test_large_integers_come_back_as_int_at_any_depth(storage: MongoDB) -> None:
    key = tid()
    result = {"a": [[2**40, {"b": -(2**62), "c": [2**63 - 1]}], 7], "d": {"e": {"f": 2**33}}, "g": 1}
    storage.store(None, FLOW, TASK, key, result)
    retrieved = storage.retrieve(FLOW, TASK, key)
    assert retrieved == result

    def kinds(value: object) -> list[type]:
        if isinstance(value, dict):
            return [kind for item in value.values() for kind in kinds(item)]
        if isinstance(value, list):
            return [kind for item in value for kind in kinds(item)]
        return [type(value)]

    assert kinds(retrieved) == [int] * 6


@pytest.mark.parametrize(
    "value",
    [
        {"big": 2**64},
        {"$dollar": 1},
        {"dot.key": 1},
        {"": 1},
        {"nul\x00key": 1},
        ["lone \ud800 surrogate"],
    ],
    ids=["int beyond 64 bits", "$ key", "dot key", "empty key", "NUL key", "lone surrogate"],
)
def test_values_bson_cannot_keep_go_as_json_text(
    storage: MongoDB, client: Client, server: Server, collection_name: str, value: Any
) -> None:
    key = tid()
    storage.store(value, FLOW, TASK, key, value)
    (document,) = documents(client, server, collection_name, key)
    assert "result" not in document and "node_args" not in document
    assert json.loads(document["result_json"]) == json.loads(json.dumps(value))
    assert storage.retrieve(FLOW, TASK, key) == json.loads(json.dumps(value))


def test_deep_values_go_as_json_text(storage: MongoDB, client: Client, server: Server, collection_name: str) -> None:
    deep: Any = "bottom"
    for _ in range(150):  # MongoDB refuses documents nested more than 100 levels
        deep = [deep]
    key = tid()
    storage.store(None, FLOW, TASK, key, deep)
    (document,) = documents(client, server, collection_name, key)
    assert "result_json" in document
    assert storage.retrieve(FLOW, TASK, key) == deep


def test_error_record(storage: MongoDB, client: Client, server: Server, collection_name: str) -> None:
    key = tid()
    storage.store(None, FLOW, TASK, key, "result first")
    storage.store_error({"a": 1}, FLOW, TASK, key, _raise())
    (document,) = documents(client, server, collection_name, key)
    assert "result" not in document
    assert document["error"]["type"] == "builtins.RuntimeError"
    assert document["error"]["message"] == "boom"
    with pytest.raises(SelinonMissingDataException, match="failed; it has no result"):
        storage.retrieve(FLOW, TASK, key)


def test_selinon1_documents_are_readable(earlier: Earlier) -> None:
    """Documents written by Selinon 1.x's adapter (no `_json` fields, no stored_at) read back as they are."""
    key = tid()
    storage, _ = earlier(
        {"node_args": {"x": 1}, "flow_name": FLOW, "task_name": TASK, "task_id": key, "result": {"old": True}}
    )
    assert storage.retrieve(FLOW, TASK, key) == {"old": True}
    storage.store(None, FLOW, TASK, key, {"new": True})
    assert storage.retrieve(FLOW, TASK, key) == {"new": True}


# -- documents of earlier versions, round trips --------------------------------------------------------------


def _older(version: str, key: str, result: Any) -> dict[str, Any]:
    """A document of ``key`` as an earlier version wrote it: an ObjectId ``_id``, the task id in ``task_id``."""
    selinon1 = {"node_args": {"n": 1}, "flow_name": FLOW, "task_name": TASK, "task_id": key, "result": result}
    if version == "Selinon 1.x":
        return {"_id": ObjectId(), **selinon1}
    stored_at = {"stored_at": datetime.datetime.now(datetime.timezone.utc)}
    marker = {"selinon_record": 1} if version == "0.2.0" else {}  # 0.1.0 wrote no marker
    return {"_id": ObjectId(), **marker, **selinon1, **stored_at}


@pytest.mark.parametrize("version", ["0.2.0", "0.1.0", "Selinon 1.x"])
def test_older_documents_are_read_replaced_and_deleted_in_place(
    earlier: Earlier, client: Client, server: Server, version: str
) -> None:
    key = tid()
    older = _older(version, key, {"old": True})
    storage, collection_name = earlier(older)
    assert storage.retrieve(FLOW, TASK, key) == {"old": True}
    assert storage.retrieve_owner(FLOW, TASK, key) == (FLOW, TASK)
    with pytest.raises(SelinonMissingDataException, match="no error recorded"):
        storage.retrieve_error(FLOW, TASK, key)

    record_id = storage.store({"n": 2}, FLOW, TASK, key, {"new": True})
    assert record_id == str(older["_id"])  # the record id 0.2.0 returned for it: the document is replaced in place
    (document,) = documents(client, server, collection_name, key)
    assert (document["_id"], document["selinon_record"], document["result"]) == (older["_id"], 1, {"new": True})
    assert storage.retrieve(FLOW, TASK, key) == {"new": True}
    assert storage.store_error(None, FLOW, TASK, key, _raise()) == record_id
    assert storage.retrieve_error(FLOW, TASK, key)["message"] == "boom"
    assert [d["_id"] for d in documents(client, server, collection_name, key)] == [older["_id"]]

    storage.delete(FLOW, TASK, key)
    assert documents(client, server, collection_name, key) == []
    with pytest.raises(SelinonMissingDataException):
        storage.retrieve(FLOW, TASK, key)
    with pytest.raises(SelinonMissingDataException):
        storage.delete(FLOW, TASK, key)
    assert storage.store(None, FLOW, TASK, key, "anew") == key  # stored anew: this version's document
    assert [d["_id"] for d in documents(client, server, collection_name, key)] == [key]


def test_record_id_finds_the_document_later(earlier: Earlier, client: Client, server: Server) -> None:
    key, older_key = tid(), tid()
    storage, name = earlier(_older("0.2.0", older_key, "old"))
    records = client[server.db_name][name]
    for task_id, as_id in ((key, lambda record_id: record_id), (older_key, ObjectId)):
        record_id = storage.store(None, FLOW, TASK, task_id, {"of": task_id})
        assert storage.store(None, FLOW, TASK, task_id, {"of": task_id, "again": True}) == record_id
        found = records.find_one({"_id": as_id(record_id)})
        assert found is not None and found["task_id"] == task_id
        assert found["result"] == storage.retrieve(FLOW, TASK, task_id) == {"of": task_id, "again": True}


def test_a_0_2_0_worker_beside_this_version_leaves_one_document(
    earlier: Earlier, client: Client, server: Server
) -> None:
    """A rolling upgrade: workers of 0.2.0 (an upsert by `task_id`, ObjectId `_id`) and of this version store the
    same task ids at once; each task id keeps one document, and what is read is what it holds."""
    storage, collection_name = earlier()
    records = client[server.db_name][collection_name]
    records.create_index("task_id", unique=True, name=INDEX_NAME)  # the 0.2.0 workers connect after this one
    keys = [tid() for _ in range(30)]

    def old_worker(worker: int) -> None:
        for key in keys:
            document = _older("0.2.0", key, f"0.2.0 worker {worker}")
            del document["_id"]
            for _attempt in range(3):  # as 0.2.0 did: a DuplicateKeyError means the document exists now
                try:
                    records.replace_one({"task_id": key}, document, upsert=True)
                    break
                except DuplicateKeyError:
                    continue

    def new_worker(worker: int) -> None:
        for key in keys:
            storage.store(None, FLOW, TASK, key, f"new worker {worker}")

    errors = at_once(*[functools.partial(w, n) for n, w in enumerate([old_worker, new_worker] * 2)])
    assert not errors, errors[:3]
    for key in keys:
        (document,) = documents(client, server, collection_name, key)
        assert storage.retrieve(FLOW, TASK, key) == document["result"]


@pytest.mark.parametrize(
    "document",
    [{"x": 14}, {"selinon_record": 1, "task_id": "another", "result": 1}],
    ids=["another program's", "of another task id"],
)
def test_a_document_keyed_by_the_task_id_that_is_not_its_record_raises(
    storage: MongoDB, client: Client, server: Server, collection_name: str, document: dict[str, Any]
) -> None:
    key = tid()
    client[server.db_name][collection_name].insert_one({"_id": key, **document})
    with pytest.raises(ForeignRecord):
        storage.retrieve(FLOW, TASK, key)


class CommandLog(monitoring.CommandListener):
    """The commands a client sends, as (name, filter), the driver's own handshakes and monitoring left out."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        command = event.command
        if event.command_name in ("find", "update", "delete", "findAndModify", "insert"):
            query = command.get("filter", command.get("query"))
            for statement in command.get("updates", command.get("deletes", [])):
                query = statement["q"]
            self.sent.append((event.command_name, query))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def test_one_round_trip_per_store_read_and_delete(earlier: Earlier, server: Server) -> None:
    """This version's documents cost one command each, found by `_id`; an older document costs one more."""
    log = CommandLog()

    class Logged(MongoDB):
        def _client_options(self) -> dict[str, Any]:
            return {**super()._client_options(), "event_listeners": [log]}

    key, older_key = tid(), tid()
    _, collection_name = earlier(_older("0.2.0", older_key, "old"))
    adapter = Logged(db_name=server.db_name, collection_name=collection_name, **server.options)
    adapter.connect()
    try:
        log.sent.clear()
        adapter.store(None, FLOW, TASK, key, "first")
        adapter.store(None, FLOW, TASK, key, "again")
        adapter.retrieve(FLOW, TASK, key)
        adapter.delete(FLOW, TASK, key)
        assert log.sent == [("update", {"_id": key}), ("update", {"_id": key}), ("find", {"_id": key}),
                            ("delete", {"_id": key})]  # fmt: skip
        log.sent.clear()
        adapter.retrieve(FLOW, TASK, older_key)
        adapter.store(None, FLOW, TASK, older_key, "replaced")
        assert log.sent == [("find", {"_id": older_key}), ("find", {"task_id": older_key}),
                            ("update", {"_id": older_key}), ("findAndModify", {"task_id": older_key})]  # fmt: skip
    finally:
        adapter.disconnect()


def test_selinon1_duplicates_stop_connect_with_advice(
    make_storage: MakeStorage, client: Client, server: Server, new_collection: Any
) -> None:
    name = new_collection()
    client[server.db_name][name].insert_many([{"task_id": "twice", "result": 1}, {"task_id": "twice", "result": 2}])
    adapter = make_storage(collection_name=name)
    with pytest.raises(StorageError, match="several documents for one task id .* remove the duplicates"):
        adapter.connect()
    assert not adapter.is_connected()


def test_an_existing_unique_index_is_reused(
    make_storage: MakeStorage, client: Client, server: Server, new_collection: Any
) -> None:
    name = new_collection()
    client[server.db_name][name].create_index("task_id", unique=True, name="made_by_hand")
    adapter = make_storage(collection_name=name)
    adapter.connect()
    adapter.store(None, FLOW, TASK, key := tid(), 1)
    assert adapter.retrieve(FLOW, TASK, key) == 1
    adapter.disconnect()


def test_task_id_must_be_a_string(storage: MongoDB) -> None:
    storage.store(None, FLOW, TASK, tid(), "someone else's")
    with pytest.raises(TypeError, match="task_id must be a string"):
        storage.retrieve(FLOW, TASK, {"$ne": None})  # type: ignore[arg-type]


# -- Selinon 1.x configuration, the pool and the command line -------------------------------------------------

SELINON1_BLOCK = """\
storages:
  - name: 'MyMongoStorage'
    classname: 'MongoDB'
    import: 'selinon.storages.mongodb'
    configuration: {{db_name: '{db}', collection_name: '{collection}', host: '{host}', port: {port}}}
tasks:
  - name: 'MyTask'
    import: 'myapp.tasks'
    storage: 'MyMongoStorage'
"""


@pytest.fixture
def selinon1_yaml(tmp_path: Path, server: Server, collection_name: str) -> Path:
    if server.has_credentials:
        pytest.skip("the Selinon 1.x block has no credentials, and SELINON_TEST_MONGODB_URI needs some")
    path = tmp_path / "nodes.yaml"
    path.write_text(
        SELINON1_BLOCK.format(db=server.db_name, collection=collection_name, host=server.host, port=server.port)
    )
    return path


def _use_pool(path: Path) -> None:
    StoragePool.configure(path)
    key = tid()
    record_id = StoragePool.set({"arg": 1}, "flow1", "MyTask", key, {"answer": 42})
    assert record_id
    assert StoragePool.retrieve("flow1", "MyTask", key) == {"answer": 42}
    mongo = StoragePool.get_connected_storage("MyMongoStorage")
    assert isinstance(mongo, MongoDB) and mongo.is_connected()


def test_selinon1_yaml_runs_as_it_is(selinon1_yaml: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_warned", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _use_pool(selinon1_yaml)
    legacy = [w for w in caught if issubclass(w.category, LegacyImportWarning)]
    assert len(legacy) == 1, [str(w.message) for w in caught]
    assert "selinon.storages.mongodb" in str(legacy[0].message)


def test_selinon1_yaml_without_import_line(selinon1_yaml: Path, tmp_path: Path) -> None:
    path = tmp_path / "modern.yaml"
    path.write_text(selinon1_yaml.read_text().replace("    import: 'selinon.storages.mongodb'\n", ""))
    assert "import: 'selinon" not in path.read_text()
    with warnings.catch_warnings():
        warnings.simplefilter("error", LegacyImportWarning)
        _use_pool(path)


def test_storages_check_command(selinon1_yaml: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "selinon", "storages", "check", "-c", str(selinon1_yaml), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (report,) = json.loads(done.stdout)
    assert (report["storage"], report["classname"], report["status"]) == ("MyMongoStorage", "MongoDB", "ok")


def test_storages_check_reports_a_down_server_without_password(tmp_path: Path) -> None:
    secret = planted_secret()
    path = tmp_path / "down.yaml"
    path.write_text(
        "storages:\n  - name: Down\n    classname: MongoDB\n    configuration:\n"
        f"      {{db_name: d, collection_name: c, uri: 'mongodb://bob:{secret}@127.0.0.1:{free_port()}/',"
        " connect_timeout: 1}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "selinon", "storages", "check", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "cannot connect to MongoDB at 127.0.0.1" in done.stdout
    assert secret not in done.stdout + done.stderr


def test_plugins_list_shows_the_classname() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "selinon", "plugins", "list", "--json"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    (entry,) = [e for e in json.loads(done.stdout) if e["classname"] == "MongoDB"]
    assert entry["distribution"] == "selinon-storage-mongodb"
    assert entry["target"] == "selinon_storage_mongodb:MongoDB"
    assert entry["status"] == "installed"


def test_planted_secret_never_shown(server: Server, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A password in the options and in the URI: not in repr, str, pool errors, or log records."""
    secret = planted_secret()
    path = tmp_path / "secret.yaml"
    path.write_text(
        "storages:\n"
        "  - name: Secret\n    classname: MongoDB\n    configuration:\n"
        f"      {{db_name: d, collection_name: c, host: 127.0.0.1, port: {free_port()}, username: bob,"
        f" password: '{secret}', connect_timeout: 1}}\n"
        "  - name: SecretUri\n    classname: MongoDB\n    configuration:\n"
        f"      {{db_name: d, collection_name: c, uri: 'mongodb://bob:{secret}@127.0.0.1:{free_port()}/',"
        " connect_timeout: 1}\n"
        "tasks:\n  - {name: T1, storage: Secret}\n  - {name: T2, storage: SecretUri}\n"
    )
    StoragePool.configure(load(path))
    shown: list[str] = []
    for task in ("T1", "T2"):
        adapter = StoragePool.get_storage(StoragePool.get_storage_name_by_task_name(task) or "")
        shown += [repr(adapter), str(adapter)]
        with pytest.raises(StorageError) as raised:
            StoragePool.set(None, "flow", task, tid(), 1)
        shown += [str(raised.value), repr(raised.value)]
    assert all(secret not in text for text in shown), shown
    assert secret not in caplog.text


def test_instances_share_nothing(make_storage: MakeStorage) -> None:
    first, second = make_storage(), make_storage()
    first.connect()
    second.connect()
    try:
        assert first._client is not second._client
        first.disconnect()
        second.store(None, FLOW, TASK, key := tid(), "still works")
        assert second.retrieve(FLOW, TASK, key) == "still works"
    finally:
        first.disconnect()
        second.disconnect()


@pytest.mark.parametrize("option", ["uri", "host"])
def test_a_password_with_an_unescaped_at_is_refused_and_hidden(tmp_path: Path, option: str) -> None:
    secret = planted_secret()
    uri = f"mongodb://user:{secret}@tail-{secret}@127.0.0.1:{free_port()}/db"
    path = tmp_path / "nodes.yaml"
    path.write_text(
        "storages:\n  - name: Mongo\n    classname: MongoDB\n"
        f"    configuration: {{db_name: d, collection_name: c, {option}: '{uri}'}}\n"
    )
    assert secret not in repr(load(path).storages["Mongo"])
    for args in ([], ["--json"]):
        done = subprocess.run(
            [sys.executable, "-m", "selinon", "storages", "check", "-c", str(path), *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2, done.stdout + done.stderr
        assert "Username and password must be escaped" in done.stderr
        assert secret not in done.stdout + done.stderr


def test_plugins_show_gives_the_defaults_the_adapter_uses(capsys: pytest.CaptureFixture[str]) -> None:
    from selinon.cli import main

    main(["plugins", "show", "MongoDB", "--json"])
    defaults = {o["name"]: o["default"] for o in json.loads(capsys.readouterr().out)["options"]}
    assert (defaults["host"], defaults["port"], defaults["auth_source"]) == ("localhost", 27017, "admin")
