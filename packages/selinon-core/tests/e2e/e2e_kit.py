"""What the end-to-end tests share: the four adapters on their real servers, a raw view of what each stored, a
fault-injecting TCP proxy, and a recorder of the storage pool's events."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import pytest

from selinon import hookimpl, plugins
from selinon.testing import TcpProxy, servers
from selinon.testing.services import in_ci

ADAPTERS = ["postgresql", "redis", "mongodb", "s3"]

POSTGRESQL_URL = servers.provide("postgresql")
REDIS_URL = servers.provide("redis")
MONGODB_URI_ENV = "SELINON_TEST_MONGODB_URI"
MONGODB_DB = os.environ.get("SELINON_TEST_MONGODB_DB", "selinon_test")
S3_ENDPOINT_ENV = "SELINON_TEST_S3_ENDPOINT"
# moto does not check credentials; these fake ones only have to be well formed.
S3_ACCESS_KEY = os.environ.get("SELINON_TEST_S3_ACCESS_KEY", "AKIAIOSFODNN7EXAMPLE")
S3_SECRET_KEY = os.environ.get("SELINON_TEST_S3_SECRET_KEY", "fake-secret")
S3_REGION = os.environ.get("SELINON_TEST_S3_REGION", "us-east-1")

#: Through the fault proxy: bounded reads (a reply that never comes must not hang a test), and a short MongoDB
#: server selection (pymongo waits that long for a server it lost before failing an attempt). Direct connections
#: keep the adapters' defaults.
FAULT_OPTIONS: dict[str, dict[str, Any]] = {
    "postgresql": {},  # psycopg has no read timeout; the proxy's cuts reset connections, so no read hangs
    "redis": {"socket_timeout": 10},
    "mongodb": {"connect_timeout": 1},
    "s3": {"read_timeout": 10},
}


def need(module: str, distribution: str) -> Any:
    """Import a module an adapter's tests need; skip without it (fail with CI=true)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        message = f"{distribution} is not installed ({exc}); run `nox -s e2e`, which installs every adapter"
        if in_ci():
            pytest.fail(f"CI=true: {message}", pytrace=False)
        pytest.skip(message)


Address = tuple[str, int]


@dataclass
class Backend:
    """One adapter on its real server, in a namespace of this test's own (table, key prefix, collection, bucket).

    ``configuration(via)`` is the adapter's YAML configuration, reaching the server directly or through a proxy
    listening at ``via``; ``records()`` reads what is stored in the namespace with the plain driver, not the
    adapter: task id -> ``{"task_name", "result"}`` or ``{"task_name", "error"}``.
    """

    name: str
    classname: str
    server: Address
    configuration: Callable[[Address | None], dict[str, Any]]
    records: Callable[[], dict[str, dict[str, Any]]]
    cleanup: Callable[[], None]

    def storage(self, via: Address | None = None, retry: dict[str, Any] | None = None) -> dict[str, Any]:
        """A ``storages:`` entry named ``Results``."""
        entry = {"name": "Results", "classname": self.classname, "configuration": self.configuration(via)}
        if retry is not None:
            entry["retry"] = retry
        return entry


def _netloc(netloc: str, via: Address) -> str:
    """``netloc`` with its host and port replaced, its user information kept."""
    userinfo, at, _ = netloc.rpartition("@")
    return f"{userinfo}{at}{via[0]}:{via[1]}"


def _json(value: Any) -> Any:
    """A JSON column's value: psycopg parses `json` columns itself, other drivers give the text."""
    return json.loads(value) if isinstance(value, str | bytes) else value


def postgresql(unique: str) -> Backend:
    sa = need("sqlalchemy", "selinon-storage-postgresql")
    adapter = need("selinon_storage_postgresql", "selinon-storage-postgresql")
    url = sa.make_url(POSTGRESQL_URL)
    table = f"selinon_e2e_{unique[:12]}"

    def configuration(via: Address | None) -> dict[str, Any]:
        if via is None:
            return {"connection_string": POSTGRESQL_URL, "table_name": table}
        target = url.set(host=via[0], port=via[1]).render_as_string(hide_password=False)
        return {"connection_string": target, "table_name": table, **FAULT_OPTIONS["postgresql"]}

    def engine() -> Any:
        return sa.create_engine(adapter.SqlStorage(connection_string=POSTGRESQL_URL)._url, poolclass=sa.pool.NullPool)

    def records() -> dict[str, dict[str, Any]]:
        found = {}
        db = engine()
        try:
            with db.connect() as connection:
                rows = connection.execute(sa.text(f"SELECT task_id, task_name, result, error FROM {table}"))
                for task_id, task_name, result, error in rows:
                    record = {"task_name": task_name}
                    record.update({"error": _json(error)} if error is not None else {"result": _json(result)})
                    found[task_id] = record
        finally:
            db.dispose()
        return found

    def cleanup() -> None:
        db = engine()
        try:
            with db.begin() as connection:
                connection.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        finally:
            db.dispose()

    return Backend(
        "postgresql", "PostgreSQL", (url.host or "127.0.0.1", url.port or 5432), configuration, records, cleanup
    )


def redis(unique: str) -> Backend:
    need("selinon_storage_redis", "selinon-storage-redis")
    driver = need("redis", "selinon-storage-redis")
    parts = urlsplit(REDIS_URL)
    prefix = f"selinon-e2e-{unique}:"

    def configuration(via: Address | None) -> dict[str, Any]:
        if via is None:
            return {"url": REDIS_URL, "key_prefix": prefix}
        url = urlunsplit(parts._replace(netloc=_netloc(parts.netloc, via)))
        return {"url": url, "key_prefix": prefix, **FAULT_OPTIONS["redis"]}

    def records() -> dict[str, dict[str, Any]]:
        client = driver.Redis.from_url(REDIS_URL)
        try:
            found = {}
            for key in client.scan_iter(match=f"{prefix}*", count=1000):  # the prefix holds no glob characters
                document = json.loads(client.get(key))
                task_id = key.decode()[len(prefix) :]
                found[task_id] = {"task_name": document["task_name"]}
                found[task_id].update({k: document[k] for k in ("result", "error") if k in document})
            return found
        finally:
            client.close()

    def cleanup() -> None:
        client = driver.Redis.from_url(REDIS_URL)
        try:
            for key in client.scan_iter(match=f"{prefix}*", count=1000):
                client.delete(key)
        finally:
            client.close()

    return Backend(
        "redis", "Redis", (parts.hostname or "127.0.0.1", parts.port or 6379), configuration, records, cleanup
    )


def mongodb(unique: str, server: Address, uri: str | None) -> Backend:
    need("selinon_storage_mongodb", "selinon-storage-mongodb")
    pymongo = need("pymongo", "selinon-storage-mongodb")
    collection = f"selinon_e2e_{unique[:12]}"
    client_uri = uri or f"mongodb://{server[0]}:{server[1]}/"

    def configuration(via: Address | None) -> dict[str, Any]:
        options = {"db_name": MONGODB_DB, "collection_name": collection}
        if via is None:
            return {**options, "uri": uri} if uri else {**options, "host": server[0], "port": server[1]}
        options.update(FAULT_OPTIONS["mongodb"])
        # Through the proxy, and only through it: pymongo would otherwise discover the server's own address.
        # pymongo's own retries are off, so that the storage pool is what retries a lost reply.
        parts = urlsplit(client_uri)
        own = [("directConnection", "true"), ("retryWrites", "false"), ("retryReads", "false")]
        query = urlencode([*parse_qsl(parts.query), *own])
        return {**options, "uri": urlunsplit(parts._replace(netloc=_netloc(parts.netloc, via), query=query))}

    def documents() -> Any:
        return pymongo.MongoClient(client_uri, serverSelectionTimeoutMS=5000)

    def records() -> dict[str, dict[str, Any]]:
        with documents() as client:
            found = {}
            for document in client[MONGODB_DB][collection].find({}):
                record = {"task_name": document["task_name"]}
                for key in ("result", "error"):
                    if key in document:
                        record[key] = document[key]
                    elif f"{key}_json" in document:
                        record[key] = json.loads(document[f"{key}_json"])
                found[document["task_id"]] = record
            return found

    def cleanup() -> None:
        with documents() as client:
            client[MONGODB_DB].drop_collection(collection)

    return Backend("mongodb", "MongoDB", server, configuration, records, cleanup)


def s3(unique: str, endpoint: str) -> Backend:
    need("selinon_storage_s3", "selinon-storage-s3")
    boto3 = need("boto3", "selinon-storage-s3")
    botocore_config = need("botocore.client", "selinon-storage-s3").Config
    parts = urlsplit(endpoint)
    bucket = f"selinon-e2e-{unique}"

    def configuration(via: Address | None) -> dict[str, Any]:
        options = {
            "bucket": bucket,
            "endpoint_url": endpoint,
            "aws_access_key_id": S3_ACCESS_KEY,
            "aws_secret_access_key": S3_SECRET_KEY,
            "region_name": S3_REGION,
        }
        if via is None:
            return options
        url = urlunsplit(parts._replace(netloc=_netloc(parts.netloc, via)))
        return {**options, "endpoint_url": url, **FAULT_OPTIONS["s3"]}

    def client() -> Any:
        session = boto3.session.Session(
            aws_access_key_id=S3_ACCESS_KEY, aws_secret_access_key=S3_SECRET_KEY, region_name=S3_REGION
        )
        return session.client("s3", endpoint_url=endpoint, config=botocore_config(s3={"addressing_style": "path"}))

    def keys(s3_client: Any) -> list[str]:
        try:
            pages = s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            return [item["Key"] for page in pages for item in page.get("Contents", [])]
        except s3_client.exceptions.NoSuchBucket:
            return []

    def records() -> dict[str, dict[str, Any]]:
        s3_client = client()
        found = {}
        for key in keys(s3_client):
            body = json.loads(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())
            found[unquote(key)] = {"task_name": body["task_name"]}  # no prefix: the key is the quoted task id
            found[unquote(key)].update({k: body[k] for k in ("result", "error") if k in body})
        return found

    def cleanup() -> None:
        s3_client = client()
        for key in keys(s3_client):
            s3_client.delete_object(Bucket=bucket, Key=key)
        with contextlib.suppress(s3_client.exceptions.NoSuchBucket):
            s3_client.delete_bucket(Bucket=bucket)

    port = parts.port or (443 if parts.scheme == "https" else 80)
    return Backend("s3", "S3Storage", (parts.hostname or "127.0.0.1", port), configuration, records, cleanup)


def new_unique() -> str:
    return uuid.uuid4().hex


# -- faults ---------------------------------------------------------------------------------------------------

_RESET = b"\x01\x00\x00\x00\x00\x00\x00\x00"  # SO_LINGER on, 0 s: close with a reset


def _kill(sock: socket.socket) -> None:
    """Reset a connection now, also when another thread is blocked reading it (shutdown wakes that thread)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class FaultProxy(TcpProxy):
    """The test kit's TcpProxy, with two more faults.

    - ``cut()`` also breaks a connection whose client is waiting for a reply. TcpProxy.cut() only closes the
      sockets, which does not wake the threads blocked reading them: a client waiting for a reply is then never
      told (psycopg, which has no read timeout, waits forever), and the server is told only when it answers.
    - ``lose_reply_to(marker)``: the server receives and executes the next request whose bytes contain
      ``marker`` (a task id), and the connection is reset before its reply reaches the client. The client cannot
      tell whether the request took effect: retrying it must not leave two records.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self._markers: list[bytes] = []
        self._doomed: set[socket.socket] = set()  # client sockets whose next reply is lost
        self.replies_lost = 0
        super().__init__(target_host, target_port)

    @property
    def address(self) -> Address:
        return (self.host, self.port)

    def cut(self) -> int:
        with self._lock:
            open_sockets, self._sockets = self._sockets, set()
            cut_short = self._doomed & open_sockets  # their replies are lost with their connections
            self._doomed -= cut_short
            self.replies_lost += len(cut_short)
        for sock in open_sockets:
            _kill(sock)
        return len(open_sockets) // 2

    def lose_reply_to(self, marker: str) -> None:
        with self._lock:
            self._markers.append(marker.encode())

    @property
    def pending(self) -> list[bytes]:
        """Markers whose request has not been seen yet."""
        with self._lock:
            return list(self._markers)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        tail = b""
        try:
            to_server = source.getsockname()[1] == self.port  # accepted sockets are on the proxy's own port
            while data := source.recv(65536):
                with self._lock:
                    if to_server:
                        seen, tail = tail + data, (tail + data)[-64:]  # a marker cut in two
                        hits = [m for m in self._markers if m in seen]
                        if hits:
                            self._markers.remove(hits[0])
                            self._doomed.add(source)
                        doomed = False
                    else:
                        doomed = sink in self._doomed
                        if doomed:
                            self._doomed.discard(sink)
                            self.replies_lost += 1
                if doomed:
                    _kill(sink)
                    _kill(source)
                    return
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._sockets.discard(source)
                self._sockets.discard(sink)
                for sock in (source, sink):  # the connection of a doomed request ended before its reply
                    if sock in self._doomed:
                        self._doomed.discard(sock)
                        self.replies_lost += 1


@dataclass
class Event:
    event: str
    storage: str
    task_name: str | None
    task_id: str | None
    error: BaseException | None
    at: float  # time.monotonic() when the pool reported it
    thread: int  # the thread that made the call (threading.get_ident())


class Events:
    """Records the storage pool's events (a ``storage_event`` hook plugin); ``react`` may act on each one, in the
    thread that made the call, before the pool returns or raises."""

    def __init__(self, react: Callable[[Event], None] | None = None) -> None:
        self.seen: list[Event] = []
        self.react = react
        self._lock = threading.Lock()

    @hookimpl
    def storage_event(
        self,
        event: str,
        storage_name: str,
        flow_name: str | None,
        task_name: str | None,
        task_id: str | None,
        duration: float,
        error: BaseException | None,
    ) -> None:
        seen = Event(event, storage_name, task_name, task_id, error, time.monotonic(), threading.get_ident())
        with self._lock:
            self.seen.append(seen)
        if self.react is not None:
            self.react(seen)

    def __enter__(self) -> Events:
        plugins.load_plugins().register(self)
        return self

    def __exit__(self, *exc: object) -> None:
        plugins.pm.unregister(self)

    def failures(self, event: str) -> list[Event]:
        """Calls that failed for good (after the pool's retries)."""
        return [e for e in self.seen if e.event == event and e.error is not None]

    def retries(self) -> list[Event]:
        return [e for e in self.seen if e.event == "retry"]
