"""Every wait ends: while another session holds a lock the adapter needs (the schema lock connect() takes on
PostgreSQL, a lock on the results table, a lock on the record's row), connect() fails within `connect_timeout`
and a store through the pool within its `retry:` deadline plus one `socket_timeout`, each with an error that says
what it waited for. A server that never answers is in test_options.py.

Each call runs in a thread that the test waits for a bounded time, and the lock is released after that: a call
that would wait for the lock forever fails the test instead of hanging it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import MakeStorage, engine_for
from selinon_storage_postgresql import SqlStorage

from selinon import StorageError, StoragePool
from selinon.testing import timed
from selinon.testing.load import FLOW, TASK, StorageEvents, storage_events

STORAGE = "Results"
CONNECT_TIMEOUT = 2
SOCKET_TIMEOUT = 2
DEADLINE = 3
#: Round trips, thread start and the pool's last pause on top of the documented bound.
SLACK = 1.5

events = pytest.fixture(storage_events, name="events")


@contextmanager
def held(url: str, *statements: str, release: str | None = None) -> Iterator[None]:
    """Another session runs ``statements`` and keeps what they lock until the block ends."""
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            for statement in statements:
                conn.execute(sa.text(statement))
            try:
                yield
            finally:
                if release:
                    conn.execute(sa.text(release))
                conn.rollback()
    finally:
        engine.dispose()


def backend_of(request: pytest.FixtureRequest, backend: str) -> str:
    url: str = request.getfixturevalue(
        {"postgresql": "postgresql_url", "mariadb": "mysql_url", "sqlite": "sqlite_url"}[backend]
    )
    return url


# -- connect() -----------------------------------------------------------------------------------------------


def test_connect_gives_up_on_the_schema_lock_after_connect_timeout(
    postgresql_url: str, make_storage: MakeStorage, table: Callable[[str], str]
) -> None:
    """Another session holds the advisory lock under which connect() creates the table on PostgreSQL."""
    name = table(postgresql_url)
    storage = make_storage(postgresql_url, table_name=name, connect_timeout=CONNECT_TIMEOUT)
    with held(postgresql_url, f"SELECT pg_advisory_lock(hashtext('selinon:{name}'))", release="SELECT 1"):
        connected, errors, elapsed = timed(storage.connect, CONNECT_TIMEOUT + 10)
    storage.disconnect()
    assert not connected and len(errors) == 1, f"connect() did not fail while the lock was held ({elapsed:.1f}s)"
    assert elapsed < CONNECT_TIMEOUT + SLACK, f"connect() took {elapsed:.1f}s"
    print(f"connect() failed after {elapsed:.2f}s: {errors[0]}")
    assert str(errors[0]).startswith(
        f"cannot connect to {where(postgresql_url)}: gave up after `connect_timeout` ({CONNECT_TIMEOUT} s) "
        f"waiting for a lock that another session holds on table {name!r} or on creating it; QueryCanceled: "
    ), str(errors[0])


LOCK_TABLE = {
    "postgresql": "LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE",
    "mariadb": "LOCK TABLES {table} WRITE",
    "sqlite": "BEGIN EXCLUSIVE",
}
UNLOCK_TABLE = {"postgresql": None, "mariadb": "UNLOCK TABLES", "sqlite": None}


def where(url: str) -> str:
    """How the adapter's messages name the database at ``url`` ("PostgreSQL at host:port/database")."""
    return SqlStorage(connection_string=url).where


@pytest.mark.parametrize("backend", ["postgresql", "mariadb", "sqlite"])
def test_connect_gives_up_on_a_locked_table_after_connect_timeout(
    backend: str, request: pytest.FixtureRequest, make_storage: MakeStorage, table: Callable[[str], str]
) -> None:
    """The table exists, and another session holds it locked (PostgreSQL ``LOCK TABLE .. IN ACCESS EXCLUSIVE
    MODE``, MariaDB ``LOCK TABLES .. WRITE``, SQLite ``BEGIN EXCLUSIVE`` on the file)."""
    url = backend_of(request, backend)
    name = table(url)
    first = make_storage(url, table_name=name)
    first.connect()
    first.disconnect()
    storage = make_storage(url, table_name=name, connect_timeout=CONNECT_TIMEOUT)
    with held(url, LOCK_TABLE[backend].format(table=name), release=UNLOCK_TABLE[backend]):
        connected, errors, elapsed = timed(storage.connect, CONNECT_TIMEOUT + 10)
    storage.disconnect()
    assert not connected and len(errors) == 1, f"connect() did not fail while the table was locked ({elapsed:.1f}s)"
    assert elapsed < CONNECT_TIMEOUT + SLACK, f"connect() took {elapsed:.1f}s"
    print(f"connect() failed after {elapsed:.2f}s: {errors[0]}")
    message = str(errors[0])
    assert isinstance(errors[0], StorageError) and message.startswith("cannot connect to "), message
    assert f"gave up after `connect_timeout` ({CONNECT_TIMEOUT} s) waiting for a lock that another session " in message
    assert "has not the columns" not in message  # a lock is not a table of another layout


# -- a store through the pool --------------------------------------------------------------------------------


def configure(tmp_path: Path, url: str, table_name: str) -> None:
    entry = {
        "name": STORAGE,
        "classname": "SqlStorage",
        "configuration": {
            "connection_string": url,
            "table_name": table_name,
            # Shorter than socket_timeout: MariaDB's connections must read with the longer one once connected.
            "connect_timeout": 1,
            "socket_timeout": SOCKET_TIMEOUT,
        },
        "retry": {"attempts": 100, "deadline": DEADLINE, "backoff": 0.1, "max_backoff": 0.5},
    }
    path = tmp_path / "nodes.yaml"
    path.write_text(json.dumps({"storages": [entry], "tasks": [{"name": TASK, "storage": STORAGE}]}))
    StoragePool.configure(path)


#: What another session holds, and the server's own words for the wait it ended.
LOCKS = {
    "postgresql-table": ("postgresql", LOCK_TABLE["postgresql"], None, "canceling statement due to statement timeout"),
    "postgresql-row": (
        "postgresql",
        "SELECT id FROM {table} WHERE task_id = '{task_id}' FOR UPDATE",
        None,
        "canceling statement due to statement timeout",
    ),
    "mariadb-table": ("mariadb", LOCK_TABLE["mariadb"], "UNLOCK TABLES", "Lock wait timeout exceeded"),
    "mariadb-row": (
        "mariadb",
        "SELECT id FROM {table} WHERE task_id = '{task_id}' FOR UPDATE",
        None,
        "Lock wait timeout exceeded",
    ),
}


@pytest.mark.parametrize("lock", list(LOCKS))
def test_store_gives_up_within_deadline_plus_socket_timeout(
    lock: str, request: pytest.FixtureRequest, table: Callable[[str], str], tmp_path: Path, events: StorageEvents
) -> None:
    """Another session holds the table or the record's row locked: each attempt gives up after `socket_timeout`,
    the pool retries within its deadline, and the store fails after that with the server's words; nothing is
    written, and the same store succeeds once the lock is released."""
    backend, statement, release, said = LOCKS[lock]
    url = backend_of(request, backend)
    name = table(url)
    configure(tmp_path, url, name)
    task_id = f"waits-{uuid.uuid4().hex[:8]}"
    StoragePool.set(None, FLOW, TASK, task_id, "before")
    bound = DEADLINE + SOCKET_TIMEOUT
    with held(url, statement.format(table=name, task_id=task_id), release=release):
        stored, errors, elapsed = timed(lambda: StoragePool.set(None, FLOW, TASK, task_id, "after"), bound + 10)
    assert not stored and len(errors) == 1, f"the store did not fail while the lock was held ({elapsed:.1f}s)"
    assert elapsed < bound + SLACK, f"the store took {elapsed:.1f}s with deadline {DEADLINE}, socket_timeout 2"
    message = str(errors[0])
    assert isinstance(errors[0], StorageError)
    assert message.startswith(f"storage {STORAGE!r} (SqlStorage): store failed after "), message
    assert (
        f"store failed in {where(url)}: gave up after `socket_timeout` ({SOCKET_TIMEOUT} s) waiting for a "
        "lock that another session holds, or for the server: " in message
    ), message
    assert said in message, message
    print(f"the store failed after {elapsed:.2f}s: {message}")
    assert len(events.retries) >= 1
    assert StoragePool.retrieve(FLOW, TASK, task_id) == "before"
    StoragePool.set(None, FLOW, TASK, task_id, "after")
    assert StoragePool.retrieve(FLOW, TASK, task_id) == "after"
