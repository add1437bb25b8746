"""The contract suite and the fault drills, run against the reference adapter (or a planted-bug variant of it,
named by ``adapter``) on the machine's Redis, under a key prefix of the run's own."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import planted_bugs
import pytest
from reference_adapter import Connection, Reference

from selinon.testing import Backend, StorageContract, StorageDrills, free_port, require_service

HOST, PORT = "127.0.0.1", 6379
PREFIX = f"selinon-kit-{uuid.uuid4().hex}:"


class RedisBackend(Backend):
    """The keys of the run's prefix, counted with a connection of the backend's own (a record kept as a list
    counts once per element)."""

    address = (HOST, PORT)

    def records(self, prefix: str) -> Counter[str]:
        connection = Connection(HOST, PORT, 5)
        try:
            counts: Counter[str] = Counter()
            for key in self._keys(connection, PREFIX + prefix):
                kind = connection.call("TYPE", key)
                count = connection.call("LLEN", key) if kind == "list" else int(kind != "none")
                counts[key.decode()[len(PREFIX) :]] += count
            return counts
        finally:
            connection.close()

    @staticmethod
    def _keys(connection: Connection, prefix: str) -> list[bytes]:
        pattern = "".join(f"\\{c}" if c in "*?[]\\" else c for c in prefix) + "*"
        cursor, keys = b"0", []
        while True:
            cursor, found = connection.call("SCAN", cursor, "MATCH", pattern, "COUNT", "1000")
            keys += found
            if cursor == b"0":
                return keys

    def remove_all(self) -> None:
        connection = Connection(HOST, PORT, 5)
        try:
            for key in self._keys(connection, PREFIX):
                connection.call("DEL", key)
        finally:
            connection.close()


@pytest.fixture(scope="session", autouse=True)
def redis_keys() -> Iterator[None]:
    require_service("Redis", HOST, PORT, "start the machine's Redis (redis-server --port 6379)")
    yield
    RedisBackend().remove_all()


def adapter_class(name: str) -> type[Reference]:
    found: type[Reference] = getattr(planted_bugs, name, Reference)
    return found


class ReferenceContract(StorageContract):
    adapter: ClassVar[str] = "Reference"
    large_payload_bytes = 1024 * 1024

    @pytest.fixture
    def storage_factory(self) -> Callable[[], Reference]:
        cls = adapter_class(self.adapter)
        return lambda: cls(HOST, PORT, key_prefix=PREFIX, connect_timeout=2, socket_timeout=5)

    @pytest.fixture
    def backend(self) -> Backend:
        return RedisBackend()

    @pytest.fixture
    def secret_storage_factory(self) -> Callable[[str], Reference]:
        cls = adapter_class(self.adapter)
        return lambda secret: cls(HOST, free_port(), password=secret, key_prefix=PREFIX, connect_timeout=2)


class ReferenceDrills(StorageDrills):
    adapter: ClassVar[str] = "Reference"
    import_path = "planted_bugs"
    threads = 4
    cut_records = 400
    load_records = 1000
    read_timeout = 2.0  # configuration() sets socket_timeout to the drills' timeout

    @property
    def classname(self) -> str:  # type: ignore[override]
        return self.adapter

    def configuration(self, host: str, port: int, timeout: float) -> dict[str, Any]:
        return {"host": host, "port": port, "key_prefix": PREFIX, "connect_timeout": timeout, "socket_timeout": timeout}

    @pytest.fixture
    def server_address(self) -> tuple[str, int]:
        return (HOST, PORT)

    @pytest.fixture
    def backend(self) -> Backend:
        return RedisBackend()

    @pytest.fixture
    def refused_credentials(self) -> Callable[[str], dict[str, Any]]:
        def configuration(secret: str) -> dict[str, Any]:
            return {
                **self.configuration(HOST, PORT, self.timeout),
                "username": "selinon-kit-nobody",
                "password": secret,
            }

        return configuration
