"""Every option: how it is checked without I/O, and what it does once connected."""

from __future__ import annotations

import logging
import threading
import time
import uuid

import pytest
import sqlalchemy as sa
from conftest import MakeStorage, engine_for
from selinon_storage_postgresql import DEFAULT_TABLE, PostgreSQL, SqlStorage
from sqlalchemy.engine import make_url

from selinon import StorageError
from selinon.testing import free_port, planted_secret

PG = "postgresql://postgres@127.0.0.1:5432/test"


def with_password(url: str, password: str) -> str:
    """The URL with a password (the test PostgreSQL trusts every connection, so any password works)."""
    return make_url(url).set(password=password).render_as_string(hide_password=False)


# -- checked in __init__, before any I/O ------------------------------------------------------------------------


def test_defaults() -> None:
    storage = PostgreSQL(connection_string=PG)
    assert (storage.table_name, storage.echo, storage.connect_timeout) == (DEFAULT_TABLE, False, 5.0)
    assert storage.socket_timeout == 30.0
    assert (storage.pool_size, storage.max_overflow, storage.create_database) == (5, 10, True)
    assert DEFAULT_TABLE == "selinon_results"
    assert not storage.is_connected()


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("postgres://u@h:5432/db", "postgresql+psycopg"),  # Selinon 1.x's scheme
        ("postgresql://u@h/db", "postgresql+psycopg"),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2"),  # an explicit driver is kept
        ("mysql+pymysql://root@h/db", "mysql+pymysql"),
        ("sqlite:////tmp/x.sqlite", "sqlite"),
    ],
)
def test_connection_string_schemes(given: str, driver: str) -> None:
    assert SqlStorage(connection_string=given)._url.drivername == driver


@pytest.mark.parametrize(
    ("connection_string", "complaint"),
    [
        ("", "SQLAlchemy URL"),
        ("not a url", "not an SQLAlchemy URL"),
        ("oracle://u@h/db", "supported: postgresql"),
        ("postgresql+nosuchdriver://u@h/db", "nosuchdriver"),
        ("postgresql+asyncpg://u@h/db", "asyncio"),
        ("sqlite://", "in-memory"),
        ("sqlite:///:memory:", "in-memory"),
    ],
)
def test_bad_connection_string(connection_string: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        SqlStorage(connection_string=connection_string)


@pytest.mark.parametrize(
    "name", ['results"; DROP TABLE x; --', "with space", "it's", "schema.table", "1starts_with_digit", "x" * 64, ""]
)
def test_table_name_must_be_plain_identifier(name: str) -> None:
    with pytest.raises(ValueError, match="`table_name` .* is not a plain identifier"):
        SqlStorage(connection_string=PG, table_name=name)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("echo", "yes"),
        ("create_database", 1),
        ("connect_timeout", 0),
        ("connect_timeout", -1),
        ("connect_timeout", "5"),
        ("connect_timeout", True),
        ("connect_timeout", float("inf")),
        ("socket_timeout", 0),
        ("socket_timeout", -1),
        ("socket_timeout", "30"),
        ("socket_timeout", None),
        ("socket_timeout", float("nan")),
        ("socket_timeout", float("inf")),
        ("socket_timeout", 1e308),
        ("pool_size", 0),
        ("pool_size", 2.5),
        ("max_overflow", -1),
        ("table_name", 5),
    ],
)
def test_bad_option_values(option: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"`{option}`"):
        SqlStorage(connection_string=PG, **{option: value})


@pytest.mark.parametrize("encoding", ["utf-8", "UTF-8", "utf8", "UTF8", "utf_8", "U8", "utf8mb4"])
def test_selinon1_encoding_utf8_spellings_accepted(encoding: str) -> None:
    SqlStorage(connection_string=PG, encoding=encoding)


@pytest.mark.parametrize("encoding", ["latin-1", "ascii", "utf-16", "no-such-codec", ""])
def test_selinon1_encoding_other_than_utf8_refused(encoding: str) -> None:
    with pytest.raises(ValueError, match="always stored as UTF-8"):
        SqlStorage(connection_string=PG, encoding=encoding)


def test_password_kept_out_of_option_errors() -> None:
    secret = planted_secret()
    with pytest.raises(ValueError) as raised:
        SqlStorage(connection_string=f"postgresql://postgres:{secret}@127.0.0.1:notaport/db")
    assert "not an SQLAlchemy URL" in str(raised.value)
    assert secret not in str(raised.value)
    storage = SqlStorage(connection_string=f"postgres://postgres:{secret}@db.example:5432/results")
    for text in (repr(storage), str(storage), storage.where):
        assert secret not in text
    assert storage.where == "PostgreSQL at db.example:5432/results"


# -- effects once connected ---------------------------------------------------------------------------------------


def test_encoding_is_ignored_text_stays_utf8(backend_url: str, make_storage: MakeStorage) -> None:
    storage = make_storage(backend_url, encoding="utf-8")
    storage.connect()
    try:
        storage.store(None, "flow", "task", f"enc-{uuid.uuid4()}", "Příliš žluťoučký kůň 🐍")
        task_id = f"enc-{uuid.uuid4()}"
        storage.store(None, "flow", "task", task_id, "日本語 ✓")
        assert storage.retrieve("flow", "task", task_id) == "日本語 ✓"
    finally:
        storage.disconnect()


def test_table_name_is_the_table_used(backend_url: str, make_storage: MakeStorage) -> None:
    table = f"selinon_opt_{uuid.uuid4().hex[:10]}"
    storage = make_storage(backend_url, table_name=table)
    storage.connect()
    try:
        storage.store(None, "flow", "task", "only-record", {"in": table})
    finally:
        storage.disconnect()
    engine = engine_for(backend_url)
    try:
        assert table in sa.inspect(engine).get_table_names()
        with engine.connect() as conn:
            assert conn.execute(sa.text(f"SELECT task_id FROM {table}")).scalars().all() == ["only-record"]
    finally:
        engine.dispose()


def test_pool_size_and_max_overflow(postgresql_url: str, make_storage: MakeStorage) -> None:
    storage = make_storage(postgresql_url, pool_size=3, max_overflow=2)
    storage.connect()
    try:
        pool = storage._engine.pool  # type: ignore[union-attr]
        assert isinstance(pool, sa.pool.QueuePool)
        assert pool.size() == 3
        assert pool._max_overflow == 2
        assert storage._engine.dialect.name == "postgresql"  # type: ignore[union-attr]
    finally:
        storage.disconnect()


def test_closed_port_fails_fast_without_password() -> None:
    secret = planted_secret()
    port = free_port()
    storage = PostgreSQL(connection_string=f"postgres://postgres:{secret}@127.0.0.1:{port}/test", connect_timeout=2)
    start = time.monotonic()
    with pytest.raises(StorageError) as raised:
        storage.connect()
    assert time.monotonic() - start < 2
    message = str(raised.value)
    assert message.startswith(f"cannot connect to PostgreSQL at 127.0.0.1:{port}/test: ")
    assert secret not in message and secret not in repr(raised.value)
    assert raised.value.__cause__ is None and raised.value.__context__ is not None  # not chained: `from None`
    assert not storage.is_connected()


def test_closed_port_mariadb(mysql_url: str) -> None:
    port = free_port()
    storage = SqlStorage(connection_string=f"mysql+pymysql://root@127.0.0.1:{port}/test", connect_timeout=2)
    with pytest.raises(StorageError, match=rf"cannot connect to MySQL/MariaDB at 127.0.0.1:{port}/test: "):
        storage.connect()


@pytest.mark.parametrize(
    ("scheme", "where"),
    [("postgresql", "PostgreSQL"), ("mysql+pymysql", "MySQL/MariaDB")],
    ids=["postgresql", "mariadb"],
)
def test_connect_timeout_bounds_a_server_that_never_answers(scheme: str, where: str, silent_port: int) -> None:
    """A server that accepts TCP connections but never speaks: connect gives up after connect_timeout (run in a
    thread, so that a connect that would wait forever fails the test instead of hanging it)."""
    storage = SqlStorage(connection_string=f"{scheme}://root@127.0.0.1:{silent_port}/test", connect_timeout=2)
    engine_for(f"{scheme}://root@127.0.0.1:{silent_port}/test").dispose()  # the driver imported before the clock
    raised: list[BaseException] = []

    def connect() -> None:
        try:
            storage.connect()
        except BaseException as exc:
            raised.append(exc)

    start = time.monotonic()
    connecting = threading.Thread(target=connect, daemon=True)
    connecting.start()
    connecting.join(10)
    elapsed = time.monotonic() - start
    assert not connecting.is_alive(), "connect() was still waiting after 10 s"
    assert len(raised) == 1 and isinstance(raised[0], StorageError), raised
    assert str(raised[0]).startswith(f"cannot connect to {where} at 127.0.0.1:{silent_port}/test: ")
    assert 1.5 < elapsed < 4.0, f"connect() took {elapsed:.1f}s with connect_timeout 2"  # 2 s of slack: a busy machine
    assert not storage.is_connected()


def test_wrong_password_is_said_to_be_refused(password_postgresql_url: str) -> None:
    """The database is named like the user (postgres/postgres): a refused password is reported as such, not as a
    missing database that could not be created; the password is never shown."""
    right = make_url(password_postgresql_url)
    storage = SqlStorage(connection_string=password_postgresql_url)  # the server works with the right password
    storage.connect()
    storage.disconnect()
    secret = planted_secret()
    wrong = SqlStorage(connection_string=right.set(password=secret).render_as_string(hide_password=False))
    with pytest.raises(StorageError) as raised:
        wrong.connect()
    message = str(raised.value)
    assert message.startswith(
        f"cannot connect to PostgreSQL at 127.0.0.1:{right.port}/postgres: the server refused the password of "
        "user 'postgres'; check the user and password in `connection_string`; OperationalError: "
    ), message
    assert "password authentication failed" in message
    assert "does not exist" not in message and "created" not in message
    assert secret not in message + repr(raised.value)
    assert not wrong.is_connected()


def test_wrong_password_is_said_to_be_refused_mariadb(mysql_url: str) -> None:
    user = f"selinon_pw_{uuid.uuid4().hex[:10]}"
    admin = engine_for(mysql_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'the-right-one'"))
    try:
        secret = planted_secret()
        url = make_url(mysql_url).set(username=user, password=secret)
        storage = SqlStorage(connection_string=url.render_as_string(hide_password=False))
        with pytest.raises(StorageError) as raised:
            storage.connect()
        message = str(raised.value)
        assert message.startswith(
            f"cannot connect to MySQL/MariaDB at 127.0.0.1:3306/test: the server refused the password of user "
            f"{user!r}; check the user and password in `connection_string`; OperationalError: (1045, "
        ), message
        assert secret not in message + repr(raised.value)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP USER IF EXISTS '{user}'@'%'"))
        admin.dispose()


def test_echo_logs_statements_but_never_the_password(
    postgresql_url: str, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    secret = planted_secret()
    database = f"selinon_echo_{uuid.uuid4().hex[:10]}"
    url = make_url(with_password(postgresql_url, secret)).set(database=database)
    storage = SqlStorage(connection_string=url.render_as_string(hide_password=False), echo=True)
    caplog.set_level(logging.DEBUG)
    try:
        storage.connect()  # creates the database too: the maintenance connection is echoed as well
        storage.store({"a": 1}, "flow", "task", "echoed", {"ok": True})
        assert storage.retrieve("flow", "task", "echoed") == {"ok": True}
        with pytest.raises(StorageError) as raised:
            storage.store(None, "flow", "task", "nul\x00id", 1)
        storage.disconnect()
    finally:
        storage.disconnect()
        drop_database(postgresql_url, database)
    out, err = capfd.readouterr()
    logged = caplog.text + "\n".join(str(r.args) for r in caplog.records)
    assert "CREATE DATABASE" in logged and "INSERT INTO" in logged  # echo did log
    for text in (logged, out, err, str(raised.value)):
        assert secret not in text


def drop_database(server_url: str, database: str) -> None:
    engine = engine_for(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    finally:
        engine.dispose()


def test_create_database_creates_a_missing_database(postgresql_url: str) -> None:
    database = f"selinon_new_{uuid.uuid4().hex[:10]}"
    url = make_url(postgresql_url).set(database=database).render_as_string(hide_password=False)
    storage = SqlStorage(connection_string=url)
    try:
        storage.connect()
        storage.store(None, "flow", "task", "in-new-db", [1, 2])
        assert storage.retrieve("flow", "task", "in-new-db") == [1, 2]
        storage.disconnect()
        again = SqlStorage(connection_string=url)  # the database now exists: a plain connect
        again.connect()
        assert again.retrieve("flow", "task", "in-new-db") == [1, 2]
        again.disconnect()
    finally:
        storage.disconnect()
        drop_database(postgresql_url, database)


def test_create_database_false_names_database_and_host(postgresql_url: str) -> None:
    database = f"selinon_absent_{uuid.uuid4().hex[:10]}"
    url = make_url(postgresql_url).set(database=database)
    storage = SqlStorage(connection_string=url.render_as_string(hide_password=False), create_database=False)
    with pytest.raises(StorageError) as raised:
        storage.connect()
    assert str(raised.value) == (
        f"database {database!r} does not exist on PostgreSQL at {url.host}:{url.port or 5432}/{database}; "
        "create it, or set `create_database: true`"
    )


def test_create_database_not_permitted(postgresql_url: str) -> None:
    """A user who may not create databases gets an error naming the database, the host and the fix."""
    role = f"selinon_nocreate_{uuid.uuid4().hex[:10]}"
    database = f"selinon_denied_{uuid.uuid4().hex[:10]}"
    admin = engine_for(postgresql_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE ROLE "{role}" LOGIN NOCREATEDB'))
    try:
        url = make_url(postgresql_url).set(username=role, password=None, database=database)
        storage = SqlStorage(connection_string=url.render_as_string(hide_password=False))
        with pytest.raises(StorageError) as raised:
            storage.connect()
        message = str(raised.value)
        assert message.startswith(f"database {database!r} does not exist on PostgreSQL at {url.host}:")
        assert "could not be created through the 'postgres' database" in message
        assert "permission denied" in message and "grant CREATEDB" in message
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}"'))
            conn.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()


def test_statement_listeners_and_the_engine_log_see_every_call(
    backend_url: str, make_storage: MakeStorage, caplog: pytest.LogCaptureFixture
) -> None:
    """Calls run on the driver's cursor, unless something watches the statements: then they go through
    SQLAlchemy's Connection, so that an engine listener (a tracer's) and the `sqlalchemy.engine` log see them."""
    storage = make_storage(backend_url)
    storage.connect()
    seen: list[str] = []

    def before_cursor_execute(*args: object) -> None:
        seen.append(str(args[2]).split()[0])

    try:
        storage.store({"a": 1}, "flow", "task", "watched", {"ok": True})
        assert seen == []
        sa.event.listen(storage._engine, "before_cursor_execute", before_cursor_execute)
        storage.store({"a": 1}, "flow", "task", "watched", {"ok": 2})
        assert storage.retrieve("flow", "task", "watched") == {"ok": 2}
        assert storage.retrieve_owner("flow", "task", "watched") == ("flow", "task")
        storage.delete("flow", "task", "watched")
        assert seen == ["INSERT", "SELECT", "SELECT", "DELETE"]
        sa.event.remove(storage._engine, "before_cursor_execute", before_cursor_execute)
        with caplog.at_level(logging.INFO, logger="sqlalchemy.engine"):
            storage.store({"a": 1}, "flow", "task", "logged", {"ok": True})
        assert "INSERT INTO" in caplog.text
        assert seen == ["INSERT", "SELECT", "SELECT", "DELETE"]
    finally:
        storage.disconnect()
