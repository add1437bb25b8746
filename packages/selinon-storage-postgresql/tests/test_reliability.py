"""Reliability through StoragePool on the real servers: the test kit's fault drills on PostgreSQL and MariaDB
(connections cut through a proxy, a server refusing or silent at connect(), refused credentials, forked
children, 10,000 records from 8 threads), and what is this adapter's own: backends terminated by PostgreSQL
while 8 threads work, a call in flight when its backend is terminated, a busy SQLite file, permanent errors that
must not be retried, how real driver errors are classified, and a result too large for the backend.

Too large: PostgreSQL's limit is 1 GB for one `json` value (and for the statement); building and sending a value
that large is impractical on a 2-core test machine, so the "too large" test runs on MariaDB only, whose
`max_allowed_packet` (16 MB by default) bounds one statement. A result that is not JSON, the other kind of
result an adapter cannot store, is tested in test_records.py.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import SqlBackend, engine_for
from selinon_storage_postgresql.storage import is_transient
from sqlalchemy.engine import make_url

from selinon import StorageError, StoragePool
from selinon.errors import TransientStorageError
from selinon.testing import StorageDrills, free_port, wait_until
from selinon.testing.load import FLOW, TASK, Outcome, StorageEvents, hammer, result_for, storage_events

STORAGE = "Results"
# Short but realistic: a lost connection is retried at once and again for up to 20 s.
RETRY = {"attempts": 8, "deadline": 20, "backoff": 0.05, "max_backoff": 1}
THREADS = 8


# -- helpers -------------------------------------------------------------------------------------------------


def configure(tmp_path: Path, url: str, table: str, retry: dict[str, Any] | None = None, **options: Any) -> None:
    """Point the pool at one SqlStorage entry (JSON is YAML) used by the load kit's task."""
    entry = {
        "name": STORAGE,
        "classname": "SqlStorage",
        "configuration": {"connection_string": url, "table_name": table, **options},
        "retry": retry or RETRY,
    }
    path = tmp_path / "nodes.yaml"
    path.write_text(json.dumps({"storages": [entry], "tasks": [{"name": TASK, "storage": STORAGE}]}))
    StoragePool.configure(path)


events = pytest.fixture(storage_events, name="events")


def rows(url: str, table: str, prefix: str) -> dict[str, list[Any]]:
    """Through the driver: every row whose task id starts with ``prefix``, by task id, with its result."""
    found: dict[str, list[Any]] = {}
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            selected = conn.execute(
                sa.text(f"SELECT task_id, result FROM {table} WHERE task_id LIKE :p"), {"p": f"{prefix}-%"}
            )
            for task_id, result in selected:
                found.setdefault(task_id, []).append(json.loads(result) if isinstance(result, str) else result)
    finally:
        engine.dispose()
    return found


def check_outcome(outcome: Outcome, url: str, table: str, prefix: str) -> None:
    """Every call succeeded or failed with a clear StorageError after the retry policy gave up; every record a
    call reported stored is there exactly once (counted through the driver), with the right content."""
    for error in outcome.errors:
        assert isinstance(error, StorageError), repr(error)
        assert f"storage {STORAGE!r} (SqlStorage)" in str(error) and " failed after " in str(error), str(error)
    assert not outcome.errors, f"{len(outcome.errors)} calls failed: {[str(e) for e in outcome.errors[:3]]}"
    found = rows(url, table, prefix)
    duplicated = [task_id for task_id, results in found.items() if len(results) != 1]
    assert not duplicated, duplicated[:5]
    wrong = [t for t in outcome.stored if t not in found or found[t] != [result_for(t)]]
    assert not wrong, f"{len(wrong)} of {len(outcome.stored)} records missing or wrong: {wrong[:5]}"
    outcome.check_all_present()  # and through the pool


def backends(admin: sa.Connection, application_name: str) -> set[int]:
    """Server processes of this test's adapter only: its unique application_name, on this database."""
    found = admin.execute(
        sa.text(
            "SELECT pid FROM pg_stat_activity WHERE application_name = :name AND datname = current_database() "
            "AND pid <> pg_backend_pid()"
        ),
        {"name": application_name},
    )
    return {pid for (pid,) in found}


def terminate_all(admin: sa.Connection, application_name: str) -> set[int]:
    """pg_terminate_backend() of every server process of this test's adapter, once they are gone: their pids."""
    pids = backends(admin, application_name)
    for pid in pids:
        admin.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    assert wait_until(lambda: not backends(admin, application_name) & pids, timeout=10)
    return pids


# -- connection loss -----------------------------------------------------------------------------------------


def test_pg_terminate_backend_while_8_threads_work(
    postgresql_url: str, table: Callable[[str], str], tmp_path: Path, events: StorageEvents
) -> None:
    """pg_terminate_backend() of every connection of the adapter (found by its unique application_name), three
    times while 8 threads store and read back: nothing is lost, nothing is doubled, no call fails."""
    name, application_name = table(postgresql_url), f"selinon-reliability-{uuid.uuid4().hex[:8]}"
    url = make_url(postgresql_url).update_query_dict({"application_name": application_name})
    configure(tmp_path, url.render_as_string(hide_password=False), name)
    StoragePool.get_connected_storage(STORAGE)
    admin_engine = engine_for(postgresql_url, isolation_level="AUTOCOMMIT")
    killed: list[int] = []

    def kill_connections() -> None:
        with admin_engine.connect() as admin:
            for _round in range(3):
                pids = backends(admin, application_name)
                for pid in pids:
                    if admin.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar():
                        killed.append(pid)
                # The next round once the adapter works on new connections (or the run is over).
                if not wait_until(lambda pids=pids: bool(backends(admin, application_name) - pids), timeout=10):
                    return

    prefix = f"kill-{uuid.uuid4().hex[:8]}"
    try:
        outcome = hammer(prefix, 2000, THREADS, during=kill_connections)
    finally:
        admin_engine.dispose()
    assert killed, "no connection of the adapter was found to terminate"
    check_outcome(outcome, postgresql_url, name, prefix)
    print(f"terminated {len(killed)} backends; the pool retried {len(events.retries)} calls; {outcome.seconds:.1f}s")


def test_a_call_in_flight_when_its_backend_is_terminated_is_retried(
    postgresql_url: str, table: Callable[[str], str], tmp_path: Path, events: StorageEvents
) -> None:
    """Deterministic: an upsert waits on a row lock the test holds; its backend is terminated while it waits;
    the pool retries it on a new connection and the record is there once."""
    name, application_name = table(postgresql_url), f"selinon-inflight-{uuid.uuid4().hex[:8]}"
    url = make_url(postgresql_url).update_query_dict({"application_name": application_name})
    configure(tmp_path, url.render_as_string(hide_password=False), name)
    task_id = f"inflight-{uuid.uuid4().hex[:8]}"
    StoragePool.set(None, FLOW, TASK, task_id, "before")
    admin_engine = engine_for(postgresql_url, isolation_level="AUTOCOMMIT")
    locker_engine = engine_for(postgresql_url)
    done: list[Any] = []
    try:
        with admin_engine.connect() as admin, locker_engine.connect() as locker:
            locker.execute(sa.text(f"SELECT id FROM {name} WHERE task_id = :t FOR UPDATE"), {"t": task_id})
            storing = threading.Thread(
                target=lambda: done.append(StoragePool.set(None, FLOW, TASK, task_id, result_for(task_id)))
            )
            storing.start()

            def waiting_on_the_lock() -> set[int]:
                found = admin.execute(
                    sa.text(
                        "SELECT pid FROM pg_stat_activity WHERE application_name = :name "
                        "AND wait_event_type = 'Lock' AND datname = current_database()"
                    ),
                    {"name": application_name},
                )
                return {pid for (pid,) in found}

            assert wait_until(lambda: bool(waiting_on_the_lock())), "the upsert never waited on the lock"
            [pid] = waiting_on_the_lock()
            assert admin.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
            assert events.retried.wait(30), "the pool did not retry the call whose connection was terminated"
            locker.rollback()  # release the row: the retried upsert goes through
            storing.join(60)
            assert not storing.is_alive()
    finally:
        admin_engine.dispose()
        locker_engine.dispose()
    assert len(done) == 1, "the store did not complete"
    [retried] = events.retries
    assert isinstance(retried, TransientStorageError) and "terminat" in str(retried)
    assert rows(postgresql_url, name, task_id.rsplit("-", 1)[0]) == {task_id: [result_for(task_id)]}


def test_a_locked_sqlite_database_is_retried_until_it_is_free(
    sqlite_url: str, table: Callable[[str], str], tmp_path: Path, events: StorageEvents
) -> None:
    """Deterministic: another connection holds the SQLite file locked; the store waits `socket_timeout`, fails
    with "database is locked", is retried by the pool, and goes through once the lock is released."""
    name = table(sqlite_url)
    configure(tmp_path, sqlite_url, name, socket_timeout=0.1)
    task_id = f"locked-{uuid.uuid4().hex[:8]}"
    StoragePool.set(None, FLOW, TASK, task_id, "before")
    locker = engine_for(sqlite_url).raw_connection()
    done: list[Any] = []
    try:
        locker.cursor().execute("BEGIN EXCLUSIVE")
        storing = threading.Thread(
            target=lambda: done.append(StoragePool.set(None, FLOW, TASK, task_id, result_for(task_id)))
        )
        storing.start()
        assert events.retried.wait(30), "the pool did not retry the locked database"
        locker.rollback()
        storing.join(60)
    finally:
        locker.close()
    assert len(done) == 1
    assert all(isinstance(e, TransientStorageError) and "locked" in str(e) for e in events.retries)
    assert StoragePool.retrieve(FLOW, TASK, task_id) == result_for(task_id)


@pytest.mark.parametrize("backend", ["postgresql", "sqlite", "mariadb"])
def test_permanent_errors_are_not_retried(
    backend: str, request: pytest.FixtureRequest, table: Callable[[str], str], tmp_path: Path, events: StorageEvents
) -> None:
    """A table dropped under the adapter (an unknown table) fails the call at once, with no retry."""
    url: str = request.getfixturevalue(
        {"postgresql": "postgresql_url", "sqlite": "sqlite_url"}.get(backend, "mysql_url")
    )
    name = table(url)
    configure(tmp_path, url, name)
    StoragePool.set(None, FLOW, TASK, "permanent", 1)
    engine = engine_for(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE {name}"))
    finally:
        engine.dispose()
    start = time.monotonic()
    with pytest.raises(StorageError) as raised:
        StoragePool.set(None, FLOW, TASK, "permanent", 2)
    assert time.monotonic() - start < 5
    assert not isinstance(raised.value, TransientStorageError)
    assert str(raised.value).startswith(f"storage {STORAGE!r} (SqlStorage): store failed: store failed in ")
    assert " after " not in str(raised.value)
    assert events.retries == []


def test_transient_classification_of_real_driver_errors(postgresql_url: str, mysql_url: str) -> None:
    """What the adapter retries, on errors the real drivers raise: a refused connection yes, bad SQL and an
    unknown database or column no."""
    refused = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    cases: list[tuple[str, str, bool]] = [
        (refused, "SELECT 1", True),
        (f"mysql+pymysql://root@127.0.0.1:{free_port()}/test", "SELECT 1", True),
        (postgresql_url, "SELEC 1", False),
        (postgresql_url, "SELECT no_such_column FROM pg_class", False),
        (mysql_url, "SELECT no_such_column FROM information_schema.tables", False),  # OperationalError in PyMySQL
        (
            make_url(postgresql_url).set(database=f"missing_{uuid.uuid4().hex[:8]}").render_as_string(False),
            "SELECT 1",
            False,
        ),
    ]
    for url, statement, expected in cases:
        engine = engine_for(url, connect_args={"connect_timeout": 2})
        try:
            with pytest.raises(sa.exc.SQLAlchemyError) as raised, engine.connect() as conn:
                conn.execute(sa.text(statement))
        finally:
            engine.dispose()
        assert is_transient(raised.value) is expected, (url.split("@")[-1], statement, str(raised.value)[:200])


# -- the test kit's drills -----------------------------------------------------------------------------------


class SqlDrills(StorageDrills):
    classname = "SqlStorage"
    read_timeout: float | None = 5  # configuration() sets socket_timeout to it
    url_fixture: str

    @pytest.fixture(autouse=True)
    def database(self, request: pytest.FixtureRequest, table: Callable[[str], str]) -> None:
        self.url = make_url(request.getfixturevalue(self.url_fixture))
        self.table_name = table(self.url.render_as_string(hide_password=False))

    @pytest.fixture
    def server_address(self) -> tuple[str, int]:
        return self.url.host or "127.0.0.1", self.url.port or self.default_port

    @pytest.fixture
    def backend(self) -> SqlBackend:
        return SqlBackend(self.url.render_as_string(hide_password=False), self.table_name)

    def configuration(self, host: str, port: int, timeout: float) -> dict[str, Any]:
        url = self.url.set(host=host, port=port).render_as_string(hide_password=False)
        return {
            "connection_string": url, "table_name": self.table_name, "connect_timeout": timeout,
            "socket_timeout": 5, "pool_size": THREADS, "max_overflow": 0,
        }  # fmt: skip


class TestPostgreSQLDrills(SqlDrills):
    url_fixture, default_port = "postgresql_url", 5432
    # Not drilled: libpq has no client-side read timeout (`socket_timeout` bounds what the server waits for), so
    # a server that accepts a statement and never answers holds the call until TCP gives up.
    read_timeout = None

    @pytest.fixture
    def refused_credentials(self, password_postgresql_url: str) -> Callable[[str], dict[str, Any]]:
        url = make_url(password_postgresql_url)
        return lambda secret: {
            "connection_string": url.set(password=secret).render_as_string(hide_password=False),
            "table_name": self.table_name, "connect_timeout": self.timeout,
        }  # fmt: skip


class TestMariaDBDrills(SqlDrills):
    url_fixture, default_port = "mysql_url", 3306

    @pytest.fixture
    def refused_credentials(self) -> Callable[[str], dict[str, Any]]:
        return lambda secret: {
            "connection_string": self.url.set(username="selinon-nobody", password=secret).render_as_string(False),
            "table_name": self.table_name, "connect_timeout": self.timeout,
        }  # fmt: skip


# -- too large -----------------------------------------------------------------------------------------------


def test_too_large_for_mariadb_changes_nothing(mysql_url: str, table: Callable[[str], str], tmp_path: Path) -> None:
    """A result beyond MariaDB's max_allowed_packet: a StorageError, and the earlier record is unchanged."""
    name = table(mysql_url)
    configure(tmp_path, mysql_url, name, retry={"attempts": 3, "deadline": 10, "backoff": 0.05})
    engine = engine_for(mysql_url)
    try:
        with engine.connect() as conn:
            limit = int(conn.execute(sa.text("SELECT @@max_allowed_packet")).scalar_one())
    finally:
        engine.dispose()
    if limit > 64 * 2**20:
        pytest.fail(f"max_allowed_packet is {limit} bytes on {mysql_url}: too large a result to build here")
    task_id = f"large-{uuid.uuid4().hex[:8]}"
    StoragePool.set({"n": 1}, FLOW, TASK, task_id, result_for(task_id))
    with pytest.raises(StorageError) as raised:
        StoragePool.set({"n": 2}, FLOW, TASK, task_id, {"blob": "x" * (limit + 1024)})
    assert f"storage {STORAGE!r}" in str(raised.value)
    assert rows(mysql_url, name, task_id.rsplit("-", 1)[0]) == {task_id: [result_for(task_id)]}
    assert StoragePool.retrieve(FLOW, TASK, task_id) == result_for(task_id)  # the adapter still works
    print(str(raised.value)[:300])


# -- idle connections ------------------------------------------------------------------------------------------


def test_an_idle_connection_the_server_closed_is_replaced_before_use(
    postgresql_url: str, make_storage: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the pool's retries: the adapter pings a connection idle longer than PING_AFTER_IDLE, and a dead
    one is replaced before the call uses it. A connection in steady use is not pinged (a round trip each)."""
    from selinon_storage_postgresql import driver

    application_name = f"selinon-idle-{uuid.uuid4().hex[:8]}"
    url = make_url(postgresql_url).update_query_dict({"application_name": application_name})
    adapter = make_storage(url.render_as_string(hide_password=False))
    adapter.connect()
    admin_engine = engine_for(postgresql_url, isolation_level="AUTOCOMMIT")
    try:
        adapter.store(None, FLOW, TASK, "idle", {"kept": True})
        with admin_engine.connect() as admin:
            assert terminate_all(admin, application_name)
        monkeypatch.setattr(driver, "PING_AFTER_IDLE", 0.0)
        assert adapter.retrieve(FLOW, TASK, "idle") == {"kept": True}
    finally:
        adapter.disconnect()
        admin_engine.dispose()


def test_after_a_lost_connection_every_connection_opened_before_it_is_replaced(
    postgresql_url: str, make_storage: Any
) -> None:
    """Without the pool's retries: the server dropped every pooled connection (a restart, a network cut); the
    first call to meet a dead one fails with a transient error, and the next calls get new connections, not the
    other dead ones, as they would through SQLAlchemy's Connection."""
    application_name = f"selinon-stale-{uuid.uuid4().hex[:8]}"
    url = make_url(postgresql_url).update_query_dict({"application_name": application_name})
    adapter = make_storage(url.render_as_string(hide_password=False))
    adapter.connect()
    admin_engine = engine_for(postgresql_url, isolation_level="AUTOCOMMIT")
    try:
        opened = [adapter._engine.raw_connection() for _ in range(3)]  # three pooled connections
        for connection in opened:
            connection.close()
        adapter.store(None, FLOW, TASK, "stale", {"kept": True})
        with admin_engine.connect() as admin:
            assert len(terminate_all(admin, application_name)) == 3
        with pytest.raises(TransientStorageError, match="terminat|closed|lost"):
            adapter.retrieve(FLOW, TASK, "stale")
        for _ in range(4):
            assert adapter.retrieve(FLOW, TASK, "stale") == {"kept": True}
    finally:
        adapter.disconnect()
        admin_engine.dispose()
