"""The server the tests run against: a SecantusDB (MongoDB wire protocol) the session starts on a free port, or
the MongoDB that SELINON_TEST_MONGODB_URI names. Every collection a session creates has a unique name and is
dropped when the session ends."""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from pymongo import MongoClient, uri_parser
from selinon_storage_mongodb import MongoDB

from selinon import StoragePool, plugins
from selinon.testing import Backend, ServerProcess, require_service
from selinon.testing.services import in_ci, pytest_terminal_summary, unavailable  # noqa: F401 - the skip summary

URI_ENV = "SELINON_TEST_MONGODB_URI"
DB_ENV = "SELINON_TEST_MONGODB_DB"


@dataclass
class Server:
    """How to reach the test server: ``options`` are the adapter's connection options for it."""

    host: str
    port: int
    uri: str | None = None  # set when SELINON_TEST_MONGODB_URI names the server
    db_name: str = field(default_factory=lambda: os.environ.get(DB_ENV, "selinon_test"))
    process: ServerProcess | None = None

    @property
    def options(self) -> dict[str, Any]:
        return {"uri": self.uri} if self.uri else {"host": self.host, "port": self.port}

    @property
    def client_uri(self) -> str:
        return self.uri or f"mongodb://{self.host}:{self.port}/"

    @property
    def has_credentials(self) -> bool:
        return bool(self.uri and uri_parser.parse_uri(self.uri)["username"])


def secantus_argv(*extra: str) -> list[str]:
    return [sys.executable, "-m", "secantus", "--host", "127.0.0.1", "--port", "{port}", *extra]


def require_secantus() -> None:
    if importlib.util.find_spec("secantus") is None:
        unavailable(
            "SecantusDB", f"SecantusDB is not installed: pip install secantusdb (or point {URI_ENV} at a MongoDB)"
        )


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    uri = os.environ.get(URI_ENV)
    if uri:
        parsed = uri_parser.parse_uri(uri)
        host, port = parsed["nodelist"][0]
        require_service("MongoDB", host, port, f"start it, or unset {URI_ENV} to let the tests start SecantusDB")
        yield Server(host=host, port=port, uri=uri)
        return
    require_secantus()
    log = tmp_path_factory.mktemp("secantus") / "server.log"
    process = ServerProcess(secantus_argv("--storage-path", ":memory:"), "SecantusDB", log=log).start()
    try:
        yield Server(host=process.host, port=process.port, process=process)
    finally:
        process.stop()


@pytest.fixture(scope="session")
def client(server: Server) -> Iterator[MongoClient[dict[str, Any]]]:
    """A plain pymongo client, to look at what the adapter wrote."""
    mongo: MongoClient[dict[str, Any]] = MongoClient(server.client_uri, serverSelectionTimeoutMS=5000)
    try:
        yield mongo
    finally:
        mongo.close()


@pytest.fixture(scope="session")
def created_collections(server: Server, client: MongoClient[dict[str, Any]]) -> Iterator[set[str]]:
    names: set[str] = set()
    yield names
    for name in names:
        client[server.db_name].drop_collection(name)


@pytest.fixture(scope="session")
def new_collection(created_collections: set[str]) -> Callable[[], str]:
    def make() -> str:
        name = f"selinon_test_{uuid.uuid4().hex[:12]}"
        created_collections.add(name)
        return name

    return make


@pytest.fixture(scope="session")
def collection_name(new_collection: Callable[[], str]) -> str:
    """The collection most tests share (each test uses its own task ids)."""
    return new_collection()


MakeStorage = Callable[..., MongoDB]


class MongoBackend(Backend):
    """A collection seen through pymongo: its documents by task id."""

    def __init__(self, server: Server, client: MongoClient[dict[str, Any]], collection: str) -> None:
        self.records_of = client[server.db_name][collection]
        self.address = None if server.uri else (server.host, server.port)

    def records(self, prefix: str) -> Counter[str]:
        """Documents keyed by ``_id`` (this version's) or holding the ``task_id`` (every version's): each counts
        once, under its task id."""
        pattern = {"$regex": f"^{re.escape(prefix)}"}
        found = self.records_of.find({"$or": [{"_id": pattern}, {"task_id": pattern}]}, {"task_id": True})
        return Counter(document.get("task_id", document["_id"]) for document in found)


@pytest.fixture
def make_storage(server: Server, collection_name: str) -> MakeStorage:
    """A new, unconnected adapter on the test server; keyword arguments override its options."""

    def make(**overrides: Any) -> MongoDB:
        options: dict[str, Any] = {"db_name": server.db_name, "collection_name": collection_name, **server.options}
        options.update(overrides)
        return MongoDB(**{k: v for k, v in options.items() if v is not None})

    return make


@pytest.fixture(autouse=True)
def fresh_pool() -> Iterator[None]:
    """Each test starts with an unconfigured pool."""
    before = set(plugins.pm.get_plugins())
    yield
    StoragePool.disconnect_all()
    StoragePool._config = None
    for plugin in set(plugins.pm.get_plugins()) - before:
        plugins.pm.unregister(plugin)
