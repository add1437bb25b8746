"""Servers the tests run against: PostgreSQL and MariaDB of the machine (or those the environment names), and
SQLite files. Every table a session creates has a unique name and is dropped when the session ends."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from selinon_storage_postgresql import SqlStorage
from sqlalchemy.engine import make_url

from selinon import StoragePool, registry
from selinon.testing import require_service

POSTGRESQL_URL = os.environ.get("SELINON_TEST_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/test")
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
        "start it (service postgresql start) or point SELINON_TEST_POSTGRESQL_URL at one",
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


@pytest.fixture(autouse=True)
def fresh_pool() -> Iterator[None]:
    """Each test starts with an unconfigured storage pool, and sees the one-time legacy warning again."""
    registry._warned.clear()
    yield
    StoragePool.disconnect_all()
    StoragePool._config = None
