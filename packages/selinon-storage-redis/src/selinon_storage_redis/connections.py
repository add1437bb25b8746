"""The adapter's commands, sent straight over redis-py connections kept in a free list.

redis-py's client does per-command work the adapter never uses: since 8.0 each command is timed and handed to
its observability recorder, and each checkout and release of a pooled connection is counted for it. Against a
local server that doubled the client's time per SET or GET (redis-py 8.1: 9.6k SET+GET/s where 4.6 did 17.9k).
The adapter's calls are single commands on single keys, so it takes a connection from a list, sends the command
and reads the reply with the connection's own methods, and puts the connection back: redis-py still opens,
authenticates, encrypts, parses and reports errors; only the client and pool bookkeeping around them is gone.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import redis

#: How long a call waits for a free connection when `max_connections` bounds them (redis-py's default wait).
WAIT_FOR_CONNECTION = 20.0


class Connections:
    """Connections of one pool, each used by one thread at a time.

    A connection that fails in any way is disconnected and handed back to the pool, so no command ever reads a
    reply meant for another; an idle one whose server closed it is reopened on checkout, as redis-py's pool
    does. After ``fork()`` the child starts a list of its own, as redis-py's pool does for its connections.
    """

    def __init__(self, pool: redis.ConnectionPool, max_connections: int | None) -> None:
        self._pool = pool
        self._max = max_connections
        #: A redis-py client on the same pool, for code that wants the whole client (Selinon 1.x's ``conn``).
        self.client = redis.Redis(connection_pool=pool)
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._idle: list[Any] = []
        self._free = threading.BoundedSemaphore(self._max) if self._max is not None else None

    def execute(self, *command: Any) -> Any:
        """Send one command and return its raw reply (bytes, int or None); a server error raises."""
        if self._pid != os.getpid():
            self._reset()
        free = self._free
        if free is not None and not free.acquire(timeout=WAIT_FOR_CONNECTION):
            raise redis.exceptions.ConnectionError(
                f"no free connection within {WAIT_FOR_CONNECTION:g} s (max_connections: {self._max})"
            )
        try:
            connection = self._checkout()
            try:
                connection.send_command(*command)
                reply = connection.read_response()
            except BaseException:
                connection.disconnect()
                self._pool.release(connection)  # the pool reconnects it when it next hands it out
                raise
            self._idle.append(connection)
            return reply
        finally:
            if free is not None:
                free.release()

    def _checkout(self) -> Any:
        try:
            connection = self._idle.pop()
        except IndexError:
            # Kept out of the pool while it works: "in use" there, so the pool's disconnect() closes it too.
            return self._pool.get_connection()
        try:
            # Pending bytes or an end of stream on an idle connection: the server closed it (a restart, a
            # timeout, CLIENT KILL). One non-blocking read finds out; a fresh socket then takes its place.
            if connection.can_read():
                connection.disconnect()
        except (redis.exceptions.ConnectionError, OSError):
            connection.disconnect()
        return connection

    def disconnect(self) -> None:
        """Close every connection, idle or in use (the pool holds them all)."""
        self._idle = []
        self._pool.disconnect()
