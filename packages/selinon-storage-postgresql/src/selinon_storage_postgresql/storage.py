"""Task results in one SQL table, through SQLAlchemy: PostgreSQL first, and SQLite, MariaDB and MySQL too."""

from __future__ import annotations

import codecs
import hashlib
import json
import math
import re
import threading
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, DisconnectionError, OperationalError, SQLAlchemyError
from sqlalchemy.schema import CreateTable

from selinon import jsonpolicy, records
from selinon.errors import SelinonMissingDataException, StorageError, TransientStorageError
from selinon.secrets import is_secret_option, scrub, secrets_in
from selinon.storage import DataStorage, ExcInfo, describe_error
from selinon_storage_postgresql import driver
from selinon_storage_postgresql.driver import LASTROWID, ROWCOUNT, ROWS, Compiled, PoolWatch

DEFAULT_TABLE = "selinon_results"
#: Selinon 1.x's table, the default with ``layout: selinon1``.
SELINON1_TABLE = "result"
#: The longest timeout accepted: a year, PyMySQL's own limit (and finite, so that every wait ends).
_LONGEST = 31_536_000
#: The least time connect() gives a statement once its own budget is spent (after it created the database).
_LEAST_WAIT = 0.5
#: A name every supported database takes unquoted and that needs no escaping anywhere (63 is PostgreSQL's limit).
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")
_BACKENDS = {"postgresql": "PostgreSQL", "sqlite": "SQLite", "mysql": "MySQL/MariaDB", "mariadb": "MariaDB"}
_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306}
_EXTRAS = {"pymysql": "PyMySQL (pip install 'selinon-storage-postgresql[mysql]')", "psycopg": "psycopg[binary]"}
_MYSQL = ("mysql", "mariadb")
#: PostgreSQL SQLSTATEs that mean another process created the database first.
_ALREADY_CREATED = ("42P04", "23505")
#: PostgreSQL SQLSTATEs of an OperationalError worth another try: the connection failed (class 08), the server is
#: shutting down or starting (57P01-57P03), a serialization failure or deadlock (40001, 40P01), too many
#: connections (53300), a lock not available (55P03), a statement cancelled (57014: ``statement_timeout``, which
#: the adapter sets from ``socket_timeout``). Others (authentication 28xxx, a missing database 3D000, a full disk
#: 53100...) fail at once.
_PG_TRANSIENT = ("57P01", "57P02", "57P03", "40001", "40P01", "53300", "55P03", "57014")
#: The SQLSTATEs of a PostgreSQL statement that waited too long for a lock or ran too long.
_PG_TIMED_OUT = ("55P03", "57014")
#: psycopg gives no SQLSTATE when opening a connection fails, even when the server answered with a FATAL error:
#: those answers are permanent (authentication, a missing database or role) except these.
_PG_FATAL_TRANSIENT = (
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
    "too many clients",
    "remaining connection slots",
    "terminating connection",
)
#: MariaDB/MySQL error numbers worth another try: too many connections (1040), server shutdown (1053), lock wait
#: timeout (1205, row and table locks), deadlock (1213), query interrupted (1317), connection killed (1927),
#: statement timeout (1969), disconnected for inactivity (4031), and the client's own "cannot reach / lost the
#: server" errors (2002-2055, 2013 also when no reply came within the read timeout). PyMySQL raises
#: OperationalError for permanent errors too (access denied 1045, unknown column 1054): those fail at once.
_MYSQL_TRANSIENT = frozenset({1040, 1053, 1205, 1213, 1317, 1927, 1969, 4031, 2002, 2003, 2006, 2013, 2014, 2055})
#: The MariaDB/MySQL error numbers of a statement that waited too long for a lock or ran too long.
_MYSQL_TIMED_OUT = (1205, 1969)
#: MariaDB's check on a JSON column failed (``JSON_VALID``): for the JSON the adapter writes, only its depth.
_MYSQL_CHECK_FAILED = 4025
#: MariaDB's ``JSON_VALID`` refuses JSON with more than this many nested arrays and objects.
MARIADB_JSON_DEPTH = 31
#: The client waits this much longer for a reply than the server waits for a lock or a statement, so that the
#: server's own error, which says what it waited for, arrives first.
_CLIENT_MARGIN = 1.0
#: sqlite3's "database is locked" (SQLITE_BUSY) and "database table is locked" (SQLITE_LOCKED).
_SQLITE_TRANSIENT = (5, 6)


def _verbatim(value: Any) -> Any:
    """The engine's JSON (de)serialiser: values reach the JSON columns as JSON text the adapter wrote, and leave
    them as the text stored, so that no driver or database re-encodes a number on the way."""
    return value


def _dump(value: Any) -> str:
    """JSON text for a value, or TypeError/ValueError before any I/O (sets, objects, NaN, lone surrogates)."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    text.encode("utf-8")  # a lone surrogate would fail only inside the driver, after the statement started
    return text


def _load(text: str | bytes) -> Any:
    return json.loads(text)


def _task_key(task_id: str) -> str:
    """The unique key of a record: fixed length, so every backend can index it (MariaDB cannot index a long
    TEXT), and built from the whole id, so no id is ever read as a pattern or a path."""
    if not isinstance(task_id, str):
        raise TypeError(f"task_id must be a string, not {type(task_id).__name__}")
    return hashlib.sha256(task_id.encode("utf-8")).hexdigest()


def _json_type(dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
    """A column type that keeps JSON text exactly as written.

    PostgreSQL ``json`` (``jsonb`` would turn the float 1e16 into the integer 10000000000000000, lose the sign of
    -0.0 and refuse "\\u0000"); MariaDB ``JSON`` (an alias of LONGTEXT checked by JSON_VALID); LONGTEXT on MySQL,
    whose binary JSON type rewrites numbers; TEXT on SQLite, where a column typed JSON would turn "12" into 12.
    """
    if dialect.name == "postgresql":
        return postgresql.JSON(none_as_null=True)
    if dialect.name in _MYSQL:
        return mysql.JSON(none_as_null=True) if getattr(dialect, "is_mariadb", False) else mysql.LONGTEXT()
    return sa.Text()


def _table(name: str, dialect: sa.Dialect) -> sa.Table:
    json_type = _json_type(dialect)
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("task_key", sa.String(64), nullable=False, unique=True),
        sa.Column("task_id", sa.Text(), nullable=False),
        sa.Column("flow_name", sa.Text(), nullable=False),
        sa.Column("task_name", sa.Text(), nullable=False),
        sa.Column("node_args", json_type, nullable=False),
        sa.Column("result", json_type, nullable=True),
        sa.Column("error", json_type, nullable=True),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.current_timestamp()),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )


def _selinon1_table(name: str, dialect: sa.Dialect) -> sa.Table:
    """The table of Selinon 1.x's adapter: ``jsonb`` columns on PostgreSQL, one unique row per task id."""
    json_type: sa.types.TypeEngine[Any] = postgresql.JSONB() if dialect.name == "postgresql" else _json_type(dialect)
    return sa.Table(
        name,
        sa.MetaData(),
        # 1.x's sequence on PostgreSQL (``result_id`` for its ``result`` table); MariaDB's are not needed
        sa.Column(
            "id", sa.Integer(), *([sa.Sequence(f"{name}_id")] if dialect.name == "postgresql" else []), primary_key=True
        ),
        sa.Column("flow_name", sa.String(128)),
        sa.Column("task_name", sa.String(128)),
        sa.Column("task_id", sa.String(255), unique=True),
        sa.Column("result", json_type),
        sa.Column("node_args", json_type),
    )


_SELINON1_COLUMNS = frozenset({"id", "flow_name", "task_name", "task_id", "result", "node_args"})
_REPLACED = ("task_id", "flow_name", "task_name", "node_args", "result", "error")
_SELINON1_REPLACED = ("flow_name", "task_name", "node_args", "result")


def _build_statement(name: str, dialect: str, table: sa.Table, layout: str) -> Any:
    """The upsert, the delete or the read of a record, keyed by the ``key`` parameter where it applies: the
    ``task_key`` in the native layout, the task id itself in Selinon 1.x's."""
    selinon1 = layout == records.SELINON1
    key_column = table.c.task_id if selinon1 else table.c.task_key
    replaced = _SELINON1_REPLACED if selinon1 else _REPLACED
    stamp = {} if selinon1 else {"stored_at": sa.func.current_timestamp()}
    key: sa.BindParameter[str] = sa.bindparam("key", type_=sa.String())
    if name == "delete":
        return sa.delete(table).where(key_column == key)
    if name == "read":
        value = (table.c.result, sa.null()) if selinon1 else (table.c.result, table.c.error)
        return sa.select(table.c.id, table.c.task_id, table.c.task_name, *value).where(key_column == key)
    if name == "owner":
        return sa.select(table.c.id, table.c.task_id, table.c.flow_name, table.c.task_name).where(key_column == key)
    if dialect in _MYSQL:
        insert = mysql.insert(table)
        return insert.on_duplicate_key_update(
            # LAST_INSERT_ID(id) makes the driver report the id of the row replaced, too.
            id=sa.func.last_insert_id(table.c.id),
            **stamp,
            **{column: insert.inserted[column] for column in replaced},
        )
    upsert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    return upsert.on_conflict_do_update(
        index_elements=[key_column], set_={**stamp, **{column: upsert.excluded[column] for column in replaced}}
    ).returning(table.c.id)


def _is_utf8(encoding: str) -> bool:
    if encoding.lower().replace("-", "").replace("_", "") == "utf8mb4":
        return True
    try:
        return codecs.lookup(encoding).name == "utf-8"
    except LookupError:
        return False


def _one_line(text: str) -> str:
    return " ".join(text.split())


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def _json_depth(text: str) -> int:
    """How many arrays and objects deep the JSON ``text`` nests."""
    depth = deepest = 0
    for char in _JSON_STRING.sub("", text):
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _wait_limit(dialect: str, seconds: float) -> str:
    """The statement that bounds, for the rest of the session, how long one statement may wait for a lock that
    another session holds.

    PostgreSQL: ``statement_timeout`` (it covers lock waits, advisory locks included, and everything else);
    MariaDB/MySQL: ``innodb_lock_wait_timeout`` (row locks) and ``lock_wait_timeout`` (tables locked by
    ``LOCK TABLES`` or by DDL), in whole seconds; SQLite: ``busy_timeout`` (a locked database file).
    """
    if dialect in _MYSQL:
        whole = max(1, math.ceil(seconds))
        return f"SET SESSION innodb_lock_wait_timeout = {whole}, lock_wait_timeout = {whole}"
    milliseconds = max(1, round(seconds * 1000))
    return f"PRAGMA busy_timeout = {milliseconds}" if dialect == "sqlite" else f"SET statement_timeout = {milliseconds}"


def is_transient(exc: SQLAlchemyError) -> bool:
    """Whether another try may succeed: a connection lost or refused, a server restarting, a lock or deadlock.

    Bad SQL, an unknown table or column, failed authentication or a value the database refuses are permanent.
    """
    if isinstance(exc, DisconnectionError | sa.exc.TimeoutError):  # pool checkout timed out: the pool is busy
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:  # SQLAlchemy recognised a disconnect
        return True
    if not isinstance(exc, OperationalError):
        return False
    orig: Any = exc.orig
    code = _error_code(exc)
    if isinstance(code, int):
        return code in _MYSQL_TRANSIENT
    if hasattr(orig, "sqlstate"):  # psycopg
        if code is None:  # a connection could not be opened: refused, reset, timed out, or turned away
            text = str(orig)
            return "FATAL:" not in text or any(reason in text for reason in _PG_FATAL_TRANSIENT)
        return code.startswith("08") or code in _PG_TRANSIENT
    if hasattr(orig, "sqlite_errorcode"):  # sqlite3 (Python 3.11+): the extended code, primary in the low byte
        return (orig.sqlite_errorcode & 0xFF) in _SQLITE_TRANSIENT
    return "database is locked" in str(orig)  # sqlite3 before Python 3.11


def _error_code(exc: SQLAlchemyError) -> str | int | None:
    """The driver's error code: MariaDB's error number, or PostgreSQL's SQLSTATE (None when psycopg could not
    open a connection)."""
    orig: Any = getattr(exc, "orig", None)
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):  # PyMySQL, mysqlclient: (errno, message); PyMySQL also has `sqlstate`
        return args[0]
    sqlstate = getattr(orig, "sqlstate", None)
    return str(sqlstate) if sqlstate else None


def timed_out(exc: SQLAlchemyError) -> bool:
    """Whether the database or the client gave up waiting: for a lock, for a statement, or for a reply."""
    code, text = _error_code(exc), str(getattr(exc, "orig", exc))
    if isinstance(code, str):
        return code in _PG_TIMED_OUT and "timeout" in text
    if code == 2013:  # the client's read timeout: "Lost connection to MySQL server during query (timed out)"
        return "timed out" in text
    if isinstance(exc, OperationalError) and "database is locked" in text:
        return True
    return code in _MYSQL_TIMED_OUT


class SqlStorage(DataStorage):
    """Task results in one SQL table of any database SQLAlchemy reaches: PostgreSQL, SQLite, MariaDB or MySQL.

    One row per task id, upserted in one statement; results are kept as the exact JSON text written.

    :param connection_string: an SQLAlchemy URL; ``postgres://`` and ``postgresql://`` use psycopg 3
    :param echo: log every SQL statement through SQLAlchemy's ``echo`` (never the password)
    :param table_name: the table, created on connect when missing; a plain identifier
    :param connect_timeout: seconds ``connect()`` may take, waiting for locks included
    :param socket_timeout: seconds one statement may wait for a lock another session holds, or run (with PyMySQL
        also: wait for the server's reply); and seconds a call may wait for a free pooled connection
    :param pool_size: connections kept open in the pool
    :param max_overflow: connections opened beyond ``pool_size`` under load, closed when returned
    :param create_database: on PostgreSQL, create the URL's database when it does not exist
    :param encoding: Selinon 1.x option: ``utf-8`` only, since JSON is always stored as UTF-8
    :param layout: ``selinon1`` reads and writes Selinon 1.x's table (``result`` by default) as 1.x did

    The 1.x surface, for subclasses written for Selinon 1.x: ``engine`` (an SQLAlchemy engine with SQLAlchemy's
    own JSON handling, as 1.x's was) and ``session`` (an ORM session on it), both made on first use after
    ``connect()`` and None when not connected; ``Result`` (``selinon_storage_postgresql.Result``) is 1.x's model.
    """

    thread_safe = True
    secret_options = frozenset({"connection_string"})

    def __init__(
        self,
        connection_string: str,
        echo: bool = False,
        table_name: str | None = None,
        connect_timeout: float = 5,
        socket_timeout: float = 30,
        pool_size: int = 5,
        max_overflow: int = 10,
        create_database: bool = True,
        encoding: str = "utf-8",
        layout: str = records.NATIVE,
    ) -> None:
        self.layout = records.check_layout(layout)
        if table_name is None:
            table_name = SELINON1_TABLE if self.layout == records.SELINON1 else DEFAULT_TABLE
        if not isinstance(connection_string, str) or not connection_string.strip():
            raise ValueError("`connection_string` must be an SQLAlchemy URL such as postgresql://user@host/db")
        self._secrets = set(secrets_in({"connection_string": connection_string}))
        self._url = self._parse_url(connection_string)
        self._secrets |= _url_secrets(self._url)
        for name, value in (("echo", echo), ("create_database", create_database)):
            if not isinstance(value, bool):
                raise ValueError(f"`{name}` must be true or false, not {value!r}")
        if not isinstance(table_name, str) or not _IDENTIFIER.match(table_name):
            raise ValueError(
                f"`table_name` {table_name!r} is not a plain identifier: use letters, digits and underscores, "
                "starting with a letter or underscore, at most 63 characters (no quotes, spaces or dots)"
            )
        for name, seconds in (("connect_timeout", connect_timeout), ("socket_timeout", socket_timeout)):
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 < seconds <= _LONGEST:
                raise ValueError(
                    f"`{name}` must be a number of seconds above 0 and at most {_LONGEST}, not {seconds!r}"
                )
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise ValueError(f"`pool_size` must be a whole number of at least 1, not {pool_size!r}")
        if isinstance(max_overflow, bool) or not isinstance(max_overflow, int) or max_overflow < 0:
            raise ValueError(f"`max_overflow` must be a whole number of at least 0, not {max_overflow!r}")
        if not isinstance(encoding, str) or not _is_utf8(encoding):
            raise ValueError(
                f"`encoding` {encoding!r} is not supported: JSON is always stored as UTF-8; "
                "remove the option or set it to 'utf-8'"
            )
        self.echo = echo
        self.table_name = table_name
        self.connect_timeout = float(connect_timeout)
        self.socket_timeout = float(socket_timeout)
        self.pool_size = pool_size
        self.max_overflow = max_overflow
        self.create_database = create_database
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self._table: sa.Table | None = None
        self._watch: PoolWatch | None = None
        self._statements: dict[str, Compiled] = {}
        self._orm_engine: Engine | None = None
        self._session: Any = None

    # -- options -----------------------------------------------------------------------------------------------

    def _parse_url(self, connection_string: str) -> URL:
        try:
            url = make_url(connection_string)
        except (ArgumentError, ValueError) as exc:
            raise ValueError(f"`connection_string` is not an SQLAlchemy URL: {self._scrub(str(exc))}") from None
        if url.host and "@" in url.host:  # SQLAlchemy ends the password at its first "@", the rest reads as host
            raise ValueError(
                "`connection_string`: the password holds an '@' that is not escaped, so the host cannot be told "
                "apart; write each '@' of the password as %40"
            )
        if url.drivername in ("postgres", "postgresql"):  # Selinon 1.x's scheme, and the driver we ship
            url = url.set(drivername="postgresql+psycopg")
        elif url.drivername.startswith("postgres+"):
            url = url.set(drivername="postgresql+" + url.drivername.partition("+")[2])
        backend = url.get_backend_name()
        if backend not in _BACKENDS:
            raise ValueError(
                f"`connection_string` names the {backend!r} database; supported: postgresql://, sqlite:///, "
                "mysql+pymysql:// (MariaDB, MySQL)"
            )
        try:
            dialect = url.get_dialect()
        except SQLAlchemyError as exc:
            raise ValueError(f"`connection_string`: {self._scrub(str(exc))}") from None
        if getattr(dialect, "is_async", False):
            raise ValueError(f"`connection_string` names the asyncio driver {url.drivername!r}; use a blocking one")
        if backend == "sqlite" and url.database in (None, "", ":memory:"):
            raise ValueError(
                "an in-memory SQLite database lives in one connection and cannot be shared by a pool; "
                "use a file: sqlite:////path/to/results.sqlite"
            )
        return url

    @property
    def where(self) -> str:
        """The endpoint for messages: backend, host, port and database, never a user or password."""
        backend = self._url.get_backend_name()
        if backend == "sqlite":
            return f"SQLite database {self._url.database}"
        port = self._url.port or _DEFAULT_PORTS[backend]
        return f"{_BACKENDS[backend]} at {self._url.host or 'localhost'}:{port}/{self._url.database or ''}"

    def __repr__(self) -> str:
        layout = " layout=selinon1" if self.layout == records.SELINON1 else ""
        return f"<{type(self).__name__} {self.where} table={self.table_name}{layout} connected={self.is_connected()}>"

    # -- connection --------------------------------------------------------------------------------------------

    def connect(self) -> None:
        with self._lock:
            if self._engine is not None:
                return
            deadline = time.monotonic() + self.connect_timeout
            try:
                self._engine, self._table, self._watch = self._open(deadline)
            except SQLAlchemyError as exc:
                if not self._database_missing(exc):
                    raise self._connect_error(exc) from None
                if not self.create_database:
                    raise StorageError(
                        f"database {self._url.database!r} does not exist on {self.where}; create it, "
                        "or set `create_database: true`"
                    ) from None
                if not self._create_missing_database():
                    raise self._connect_error(exc) from None
                try:
                    self._engine, self._table, self._watch = self._open(deadline)
                except SQLAlchemyError as again:
                    raise self._connect_error(again) from None
            except ImportError as exc:
                driver = self._url.get_driver_name()
                raise StorageError(
                    f"cannot connect to {self.where}: the driver {driver!r} is not installed ({exc}); "
                    f"install {_EXTRAS.get(driver, driver)}"
                ) from None

    def disconnect(self) -> None:
        with self._lock:
            engine, self._engine, self._table, self._watch = self._engine, None, None, None
            session, orm_engine, self._session, self._orm_engine = self._session, self._orm_engine, None, None
            self._statements = {}
        if session is not None:
            session.close()
        for each in (orm_engine, engine):
            if each is not None:
                each.dispose()

    def is_connected(self) -> bool:
        return self._engine is not None

    # -- the 1.x surface ---------------------------------------------------------------------------------------

    @property
    def engine(self) -> Engine | None:
        """Selinon 1.x's engine, for subclasses written for 1.x: SQLAlchemy's own JSON handling (the adapter's
        engine keeps JSON text verbatim, which ORM models do not expect); None when not connected."""
        with self._lock:
            if self._orm_engine is None and self._engine is not None:
                self._orm_engine, _watch = self._create_engine(self._url, json_serializer=None, json_deserializer=None)
            return self._orm_engine

    @engine.setter
    def engine(self, engine: Engine | None) -> None:
        self._orm_engine = engine  # a subclass's own engine, as 1.x subclasses could set; disposed on disconnect

    @property
    def session(self) -> Any:
        """Selinon 1.x's ORM session on :attr:`engine`, for subclasses written for 1.x; None when not connected.
        Like any SQLAlchemy session it is not thread-safe."""
        engine = self.engine
        with self._lock:
            if self._session is None and engine is not None:
                from sqlalchemy.orm import Session  # the ORM only for subclasses that use it

                self._session = Session(bind=engine)
            return self._session

    @session.setter
    def session(self, session: Any) -> None:
        self._session = session

    def _create_engine(self, url: URL, **extra: Any) -> tuple[Engine, PoolWatch]:
        """Every call is one statement, atomic by itself: in autocommit it is one round trip, where a transaction
        around it would add BEGIN and COMMIT (or ROLLBACK) round trips."""
        options: dict[str, Any] = {
            "echo": self.echo,
            "isolation_level": "AUTOCOMMIT",
            "connect_args": self._connect_args(url),
            "json_serializer": _verbatim,
            "json_deserializer": _verbatim,
        }
        if "poolclass" not in extra:  # every supported database gets a QueuePool (in-memory SQLite is refused)
            options.update(pool_size=self.pool_size, max_overflow=self.max_overflow, pool_timeout=self.socket_timeout)
        options.update(extra)
        engine = sa.create_engine(url, **{name: value for name, value in options.items() if value is not None})
        sa.event.listen(engine, "connect", self._on_new_connection)
        return engine, PoolWatch(engine)

    def _connect_args(self, url: URL) -> dict[str, Any]:
        """Opening a connection is bounded by ``connect_timeout``: PyMySQL's covers only the TCP connection, its
        read and write timeouts cover the handshake too (they are lengthened once it is done)."""
        driver = url.get_driver_name()
        whole_seconds = max(1, math.ceil(self.connect_timeout))
        if driver == "pymysql":
            return {"connect_timeout": whole_seconds, "read_timeout": whole_seconds, "write_timeout": whole_seconds}
        if driver in ("psycopg", "psycopg2", "mysqldb"):
            return {"connect_timeout": whole_seconds}
        return {}

    def _on_new_connection(self, dbapi_connection: Any, _record: Any) -> None:
        """Every session of the engine bounds its statements by ``socket_timeout``."""
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(_wait_limit(self._url.get_backend_name(), self.socket_timeout))
        finally:
            cursor.close()
        dbapi_connection.commit()  # psycopg runs the SET in a transaction, which a rollback would undo
        if self._url.get_driver_name() == "pymysql":
            # PyMySQL reads these at each read and write; only its constructor takes them.
            dbapi_connection._read_timeout = self.socket_timeout + _CLIENT_MARGIN
            dbapi_connection._write_timeout = self.socket_timeout + _CLIENT_MARGIN

    def _open(self, deadline: float) -> tuple[Engine, sa.Table, PoolWatch]:
        """A new engine, checked with one round trip that also creates the table when it is missing; its waits for
        locks other sessions hold end at ``deadline``."""
        engine, watch = self._create_engine(self._url)
        try:
            with engine.connect() as conn:
                # The adapter's only transaction: the advisory lock and the table's creation belong together.
                conn.execution_options(isolation_level=conn.default_isolation_level)
                with conn.begin():
                    selinon1 = self.layout == records.SELINON1
                    table = (_selinon1_table if selinon1 else _table)(self.table_name, conn.dialect)
                    dialect = conn.dialect.name
                    conn.execute(sa.text(_wait_limit(dialect, max(deadline - time.monotonic(), _LEAST_WAIT))))
                    if dialect == "postgresql":
                        # CREATE TABLE IF NOT EXISTS can still collide in PostgreSQL's catalogue when processes race.
                        conn.execute(
                            sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"selinon:{table.name}"}
                        )
                    if selinon1:
                        table.metadata.create_all(conn)  # with 1.x's sequence, when the table is missing
                    else:
                        conn.execute(CreateTable(table, if_not_exists=True))
                    self._check_layout(conn, table)
                    conn.execute(sa.text(_wait_limit(dialect, self.socket_timeout)))
        except BaseException:
            engine.dispose()
            raise
        return engine, table, watch

    def _check_layout(self, conn: sa.Connection, table: sa.Table) -> None:
        try:
            conn.execute(sa.select(*table.c).where(sa.false()))
        except SQLAlchemyError as exc:
            if timed_out(exc) or is_transient(exc):
                raise
            # This session's transaction failed with the statement: look at the table from another one.
            found = {column["name"] for column in sa.inspect(conn.engine).get_columns(self.table_name)}
            if self.layout == records.NATIVE and found == _SELINON1_COLUMNS:
                raise StorageError(
                    f"table {self.table_name!r} in {self.where} is Selinon 1.x's: add `layout: selinon1` to read "
                    "and write it as 1.x did, or set `table_name` to a new table"
                ) from None
            columns = ", ".join(table.c.keys())
            raise StorageError(
                f"table {self.table_name!r} in {self.where} exists but has not the columns this adapter uses "
                f"({columns}): {self._describe(exc)}; set `table_name` to a new table"
            ) from None
        if self.layout == records.SELINON1:
            found = {column["name"] for column in sa.inspect(conn).get_columns(self.table_name)}
            if found != _SELINON1_COLUMNS:
                raise StorageError(
                    f"table {self.table_name!r} in {self.where} is not Selinon 1.x's (its columns: "
                    f"{', '.join(sorted(found))}): with `layout: selinon1` name 1.x's table in `table_name`"
                ) from None

    def _database_missing(self, exc: SQLAlchemyError) -> bool:
        """PostgreSQL turned the connection away because the URL's database does not exist (and not, say, because
        it refused the password of a user named like the database)."""
        database = self._url.database
        return bool(
            database
            and self._url.get_backend_name() == "postgresql"
            and f'database "{database}" does not exist' in str(getattr(exc, "orig", exc))
        )

    def _create_missing_database(self) -> bool:
        """Create the URL's database through the ``postgres`` maintenance database; False if it exists."""
        database = self._url.database
        maintenance, _watch = self._create_engine(
            self._url.set(database="postgres"), poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT"
        )
        try:
            with maintenance.connect() as conn:
                found = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": database})
                if found.first() is not None:
                    return False
                quoted = conn.dialect.identifier_preparer.quote_identifier(str(database))
                conn.execute(sa.text(f"CREATE DATABASE {quoted}"))
        except SQLAlchemyError as exc:
            if getattr(getattr(exc, "orig", None), "sqlstate", None) in _ALREADY_CREATED:
                return True
            raise StorageError(
                f"database {database!r} does not exist on {self.where} and could not be created through the "
                f"'postgres' database: {self._describe(exc)}; create it, or grant CREATEDB to the user"
            ) from None
        finally:
            maintenance.dispose()
        return True

    # -- records -----------------------------------------------------------------------------------------------

    def store(self, node_args: Any, flow_name: str, task_name: str, task_id: str, result: Any) -> int:
        jsonpolicy.check(result)
        return self._upsert(node_args, flow_name, task_name, task_id, result=_dump(result), error=None)

    def store_error(self, node_args: Any, flow_name: str, task_name: str, task_id: str, exc_info: ExcInfo) -> int:
        if self.layout == records.SELINON1:
            # Selinon 1.x's table has no place for an error, and its readers would take any row for a result.
            raise NotImplementedError("with `layout: selinon1` errors are not stored, as in Selinon 1.x")
        return self._upsert(
            node_args, flow_name, task_name, task_id, result=None, error=_dump(describe_error(exc_info))
        )

    def retrieve(self, flow_name: str, task_name: str, task_id: str) -> Any:
        result, _error = self._read(task_name, task_id)
        if result is None:
            if self.layout == records.SELINON1:
                return None  # SQL NULL, read by Selinon 1.x as None
            raise SelinonMissingDataException(f"task {task_id!r} failed; it has no result")
        return self._load(result, task_id)

    def retrieve_error(self, flow_name: str, task_name: str, task_id: str) -> dict[str, str]:
        _result, error = self._read(task_name, task_id)
        if error is None:
            raise SelinonMissingDataException(f"task {task_id!r} has no error recorded in {self.where}")
        return dict(self._load(error, task_id))

    def retrieve_owner(self, flow_name: str, task_name: str, task_id: str) -> tuple[str | None, str | None]:
        try:
            rows = self._run("owner", {"key": self._key(task_id)}, ROWS)
        except SQLAlchemyError as exc:
            raise self._call_error("retrieve failed in", exc) from None
        if not rows:
            raise SelinonMissingDataException(f"no record for task {task_id!r} in {self.where}")
        _id, row_task_id, row_flow_name, row_task_name = rows[0]
        if row_task_id != task_id:
            where = f"row {_id} of table {self.table_name!r} in {self.where}"
            raise records.ForeignRecord(f"{where} is keyed for task {task_id!r} but holds task {row_task_id!r}")
        return row_flow_name, row_task_name

    def delete(self, flow_name: str, task_name: str, task_id: str) -> None:
        try:
            deleted = self._run("delete", {"key": self._key(task_id)}, ROWCOUNT)
        except SQLAlchemyError as exc:
            raise self._call_error("delete failed in", exc) from None
        if not deleted:
            raise SelinonMissingDataException(f"no record for task {task_id!r} in {self.where}")

    def _upsert(
        self, node_args: Any, flow_name: str, task_name: str, task_id: str, result: str | None, error: str | None
    ) -> int:
        """Replace the whole record of ``task_id`` in one statement; the record id stays the same."""
        values = {
            "task_key": _task_key(task_id),
            "task_id": task_id,
            "flow_name": flow_name,
            "task_name": task_name,
            "node_args": _dump(node_args),
            "result": result,
            "error": error,
        }
        if self.layout == records.SELINON1:
            values = {name: values[name] for name in ("task_id", *_SELINON1_REPLACED)}
        try:
            if self._url.get_backend_name() in _MYSQL:  # LAST_INSERT_ID(id): the id of the row replaced, too
                return int(self._run("upsert", values, LASTROWID))
            return int(self._run("upsert", values, ROWS)[0][0])
        except SQLAlchemyError as exc:
            if _error_code(exc) == _MYSQL_CHECK_FAILED:
                depth, column = max((_json_depth(values[name] or ""), name) for name in ("node_args", "result"))
                if depth > MARIADB_JSON_DEPTH:  # the JSON the adapter writes is valid: only its depth fails the check
                    raise StorageError(
                        f"store failed in {self.where}: the {column} of task {task_id!r} nests {depth} arrays and "
                        f"objects deep, and MariaDB's JSON columns take at most {MARIADB_JSON_DEPTH}; nothing was "
                        "written. Store a flatter value (for example the deepest part as a JSON string), or use "
                        "PostgreSQL"
                    ) from None
            raise self._call_error("store failed in", exc) from None

    def _read(self, task_name: str, task_id: str) -> tuple[str | bytes | None, str | bytes | None]:
        """The JSON text of the record's result and error (None for SQL NULL); ForeignRecord for a row that is
        not the record of this task."""
        try:
            rows = self._run("read", {"key": self._key(task_id)}, ROWS)
        except SQLAlchemyError as exc:
            raise self._call_error("retrieve failed in", exc) from None
        if not rows:
            raise SelinonMissingDataException(f"no record for task {task_id!r} in {self.where}")
        _id, row_task_id, row_task_name, result, error = rows[0]
        where = f"row {_id} of table {self.table_name!r} in {self.where}"
        if row_task_id != task_id:
            raise records.ForeignRecord(f"{where} is keyed for task {task_id!r} but holds task {row_task_id!r}")
        if self.layout == records.SELINON1 and row_task_name != task_name:
            raise records.ForeignRecord(f"{where} is Selinon 1.x's record of task {row_task_name!r}, not {task_name!r}")
        if self.layout == records.NATIVE and result is None and error is None:
            raise records.ForeignRecord(f"{where} holds neither a result nor an error")
        return result, error

    def _key(self, task_id: str) -> str:
        if self.layout == records.SELINON1:
            if not isinstance(task_id, str):
                raise TypeError(f"task_id must be a string, not {type(task_id).__name__}")
            return task_id
        return _task_key(task_id)

    def _load(self, text: str | bytes, task_id: str) -> Any:
        try:
            return _load(text)
        except ValueError:
            raise records.ForeignRecord(
                f"the record of task {task_id!r} in table {self.table_name!r} in {self.where} is not JSON"
            ) from None

    def _run(self, name: str, values: dict[str, Any], read: str) -> Any:
        """One statement in autocommit, on the driver's cursor (:mod:`selinon_storage_postgresql.driver`).
        Statements are built and compiled once per connected adapter: that costs more CPU than a round trip to a
        local server (see the benchmarks)."""
        engine, table, watch = self._engine, self._table, self._watch
        if engine is None or table is None or watch is None:
            raise StorageError(f"{type(self).__name__} for {self.where} is not connected; call connect() first")
        statement = self._statements.get(name)
        if statement is None:
            built = _build_statement(name, engine.dialect.name, table, self.layout)
            keys = list(values) if name == "upsert" else None
            statement = self._statements[name] = driver.compile_statement(built, engine.dialect, keys)
        return driver.run(engine, watch, statement, values, read)

    # -- messages ----------------------------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        return scrub(text, self._secrets)

    def _describe(self, exc: BaseException) -> str:
        """The driver's own message (SQLAlchemy's adds the statement), on one line and without secrets."""
        cause = getattr(exc, "orig", None) or exc
        return self._scrub(f"{type(cause).__name__}: {_one_line(str(cause))}")

    def _error(self, what: str, exc: BaseException) -> StorageError:
        return StorageError(f"{what} {self.where}: {self._describe(exc)}")

    def _connect_error(self, exc: SQLAlchemyError) -> StorageError:
        """Why ``connect()`` failed, said first in plain words where the driver's text does not."""
        text = str(getattr(exc, "orig", exc))
        reason = ""
        if timed_out(exc):
            reason = (
                f"gave up after `connect_timeout` ({self.connect_timeout:g} s) waiting for a lock that another "
                f"session holds on table {self.table_name!r} or on creating it; "
            )
        elif _error_code(exc) == 1045 or "password authentication failed" in text:
            reason = (
                f"the server refused the password of user {self._url.username!r}; "
                "check the user and password in `connection_string`; "
            )
        return StorageError(f"cannot connect to {self.where}: {reason}{self._describe(exc)}")

    def _call_error(self, what: str, exc: SQLAlchemyError) -> StorageError:
        """The error a store, retrieve or delete raises: transient (the pool retries it) for a lost connection or
        a lock held too long by another session."""
        if timed_out(exc):
            return TransientStorageError(
                f"{what} {self.where}: gave up after `socket_timeout` ({self.socket_timeout:g} s) waiting for a "
                f"lock that another session holds, or for the server: {self._describe(exc)}"
            )
        if is_transient(exc):
            return TransientStorageError(f"{what} {self.where}: {self._describe(exc)}")
        return self._error(what, exc)


class PostgreSQL(SqlStorage):
    """Task results in one PostgreSQL table (the same adapter as ``SqlStorage``, under Selinon 1.x's name).

    Any SQLAlchemy URL works; ``postgres://`` and ``postgresql://`` use psycopg 3.
    """


def _url_secrets(url: URL) -> set[str]:
    """The password as SQLAlchemy decoded it, and the values of secret query parameters."""
    found = {url.password} if url.password else set()
    for name, value in url.query.items():
        if is_secret_option(name):
            found.update([value] if isinstance(value, str) else value)
    return {str(secret) for secret in found if secret}
