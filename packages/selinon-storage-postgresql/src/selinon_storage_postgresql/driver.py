"""The adapter's calls, run on the driver's own cursor of a pooled connection.

SQLAlchemy's ``Connection``, execution context and ``Result`` cost more client CPU per call than the round trip
to a local server. Each statement is compiled once for the engine's dialect, and each call checks a connection
out of the engine's pool, runs the compiled text with its parameters on a cursor and reads the outcome. What
SQLAlchemy's ``Connection`` adds that matters to the adapter is kept: driver errors become SQLAlchemy's exception
classes, a lost connection is discarded along with every pooled connection opened before it (they are replaced at
checkout), and the statement goes through SQLAlchemy's ``Connection`` after all while statements are logged
(``echo``, the ``sqlalchemy.engine`` logger at INFO) or an engine listener watches statements.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError

#: A pooled connection idle longer than this is pinged before use (a server or a firewall may have closed it);
#: busier ones are not: a ping is a round trip, as long as the call itself on a local server.
PING_AFTER_IDLE = 10.0
#: What a call reads from the cursor: the rows, the number of rows changed, or the id of the row inserted.
ROWS, ROWCOUNT, LASTROWID = "rows", "rowcount", "lastrowid"
_STATEMENT_EVENTS = ("before_execute", "after_execute", "before_cursor_execute", "after_cursor_execute")
_ENGINE_LOGGER = logging.getLogger("sqlalchemy.engine.Engine")


class Compiled(NamedTuple):
    """A statement's text in the driver's parameter style; ``names`` orders the parameters of a positional
    style (SQLite's ``?``, MySQL drivers' ``%s``), None for a named one (psycopg's ``%(name)s``)."""

    sql: str
    names: tuple[str, ...] | None

    def parameters(self, values: dict[str, Any]) -> Any:
        return values if self.names is None else tuple(values[name] for name in self.names)


def compile_statement(statement: Any, dialect: sa.Dialect, keys: list[str] | None = None) -> Compiled:
    """``keys``: the columns an INSERT is given values for (its other columns take their defaults)."""
    compiled = statement.compile(dialect=dialect, column_keys=keys)
    names = compiled.positiontup
    return Compiled(compiled.string, tuple(names) if names is not None else None)


class PoolWatch:
    """The adapter's listeners on its engine's pool: a connection idle for a while is pinged before use, and
    every connection opened before one was found lost is replaced at checkout, as SQLAlchemy's ``Connection``
    has its pool do (a server restart or a network cut took them all)."""

    def __init__(self, engine: Engine) -> None:
        self.dialect = engine.dialect
        self.stale_before = -math.inf
        sa.event.listen(engine, "connect", self.opened)
        sa.event.listen(engine, "checkin", self.checked_in)
        sa.event.listen(engine, "checkout", self.checked_out)

    def lost(self) -> None:
        self.stale_before = time.monotonic()

    def opened(self, _dbapi_connection: Any, record: Any) -> None:
        record.info["opened_at"] = time.monotonic()

    def checked_in(self, _dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    def checked_out(self, dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        """Raising DisconnectionError has the pool open another connection in place of this one."""
        info = record.info
        if info.get("opened_at", -math.inf) < self.stale_before:
            raise DisconnectionError("the pooled connection was opened before another one was found lost")
        if time.monotonic() - info.get("idle_since", math.inf) <= PING_AFTER_IDLE:
            return
        try:
            alive = self.dialect.do_ping(dbapi_connection)
        except Exception:
            alive = False
        if not alive:
            raise DisconnectionError("the pooled connection did not answer a ping")


def observed(engine: Engine) -> bool:
    """Whether something watches the engine's statements: its log, or a listener (a tracer's, say)."""
    if engine.echo or _ENGINE_LOGGER.isEnabledFor(logging.INFO):
        return True
    dispatch = engine.dispatch
    return any(getattr(dispatch, event) for event in _STATEMENT_EVENTS)


def run(engine: Engine, watch: PoolWatch, statement: Compiled, values: dict[str, Any], read: str) -> Any:
    """Run one statement in autocommit and return what ``read`` names; driver errors are raised as SQLAlchemy's,
    as ``Connection.execute`` raises them."""
    parameters = statement.parameters(values)
    if observed(engine):
        with engine.connect() as conn:
            result = conn.exec_driver_sql(statement.sql, parameters)
            return result.all() if read == ROWS else result.rowcount if read == ROWCOUNT else result.lastrowid
    dialect = engine.dialect
    error = dialect.loaded_dbapi.Error
    try:
        connection = engine.raw_connection()
    except error as exc:  # it could not be opened
        raise _wrap(dialect, None, exc, dialect.is_disconnect(exc, None, None)) from exc
    cursor = None
    try:
        cursor = connection.cursor()
        cursor.execute(statement.sql, parameters)
        # All rows: SQLite completes an INSERT .. RETURNING only once its rows are read.
        return cursor.fetchall() if read == ROWS else cursor.rowcount if read == ROWCOUNT else cursor.lastrowid
    except error as exc:
        lost = dialect.is_disconnect(exc, connection, cursor)
        if lost:
            watch.lost()
            connection.invalidate(exc)
        raise _wrap(dialect, statement.sql, exc, lost) from exc
    except BaseException as exc:
        if not isinstance(exc, Exception):  # interrupted: the connection may be in the middle of a reply
            connection.invalidate(exc)
        raise
    finally:
        if cursor is not None:
            try:
                cursor.close()
            except Exception:  # a cursor of a connection already lost; the error that matters is raised
                pass
        connection.close()  # back to the pool (a connection invalidated above is discarded)


def _wrap(dialect: sa.Dialect, sql: str | None, exc: Exception, lost: bool) -> DBAPIError:
    return DBAPIError.instance(
        sql, None, exc, dialect.loaded_dbapi.Error, hide_parameters=True, connection_invalidated=lost, dialect=dialect
    )
