"""A reference adapter for the test kit's own tests: Redis over raw sockets, with a small connection pool.

It does everything the adapter guide asks (an upsert, exact keys, a connect timeout, transient errors told
apart by their kind, no secret in its repr or errors, an idempotent connect, a disconnect that closes every
socket), in a hundred lines and with no driver, so that the core's tests can plant one bug at a time in it
(planted_bugs.py) and prove that the contract suite and the fault drills catch each.
"""

from __future__ import annotations

import json
import socket
import threading
from typing import Any

from selinon import DataStorage, SelinonMissingDataException, StorageError, TransientStorageError, jsonpolicy
from selinon.storage import ExcInfo, describe_error

#: Redis error codes (an error reply's first word) that mean "try again"; any other is permanent.
TRANSIENT_CODES = frozenset({"LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "CLUSTERDOWN"})


class ReplyError(Exception):
    """An error reply of the server: ``code`` is its first word (WRONGPASS, NOAUTH, LOADING...)."""

    @property
    def code(self) -> str:
        return str(self.args[0]).split(" ", 1)[0]


class Connection:
    """One RESP connection: a command out, its reply in."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.file = self.sock.makefile("rb")

    def call(self, *args: str | bytes) -> Any:
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg if isinstance(arg, bytes) else arg.encode()
            parts += [b"$%d\r\n" % len(data), data, b"\r\n"]
        self.sock.sendall(b"".join(parts))
        return self._reply()

    def _reply(self) -> Any:
        line = self.file.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionResetError("the server closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise ReplyError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            if int(rest) < 0:
                return None
            data = self.file.read(int(rest) + 2)
            if len(data) != int(rest) + 2:
                raise ConnectionResetError("the server closed the connection")
            return data[:-2]
        if kind == b"*":
            return None if int(rest) < 0 else [self._reply() for _ in range(int(rest))]
        raise ConnectionResetError(f"unexpected reply {line[:20]!r}")

    def close(self) -> None:
        self.file.close()
        self.sock.close()


class Reference(DataStorage):
    """Keeps task results in Redis, one JSON record per task id under ``key_prefix + task_id``."""

    thread_safe = True
    transient_errors = (TransientStorageError,)

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 6379,
        username: str | None = None,
        password: str | None = None,
        key_prefix: str = "selinon:",
        connect_timeout: float = 5.0,
        socket_timeout: float = 10.0,
    ) -> None:
        self.host, self.port, self.username, self.password = host, int(port), username, password
        self.key_prefix = key_prefix
        self.connect_timeout, self.socket_timeout = float(connect_timeout), float(socket_timeout)
        self._idle: list[Connection] | None = None  # None: not connected
        self._lock = threading.Lock()

    # -- connections -----------------------------------------------------------------------------------------

    def connect(self) -> None:
        if self._idle is not None:
            return
        connection = self._open()
        with self._lock:
            if self._idle is None:
                self._idle = [connection]
                return
        connection.close()  # another thread connected first

    def disconnect(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, None
        for connection in idle or ():
            connection.close()

    def is_connected(self) -> bool:
        return self._idle is not None

    def _open(self) -> Connection:
        where = f"Reference at {self.host}:{self.port}"
        try:
            connection = self._connection()
        except OSError as exc:
            raise TransientStorageError(f"cannot connect to {where}: {type(exc).__name__}: {exc}") from None
        try:
            if self.password is not None:
                connection.call("AUTH", *([self.username] if self.username else []), self.password)
            connection.call("PING")
            connection.sock.settimeout(self.socket_timeout)
        except ReplyError as exc:
            connection.close()
            raise self._classified(exc, f"{where} refused the connection") from None
        except OSError as exc:
            connection.close()
            raise TransientStorageError(f"cannot connect to {where}: {type(exc).__name__}: {exc}") from None
        return connection

    def _connection(self) -> Connection:
        return Connection(self.host, self.port, self.connect_timeout)

    def _call(self, *args: str | bytes) -> Any:
        with self._lock:
            if self._idle is None:
                raise StorageError("not connected; call connect() first")
            connection = self._idle.pop() if self._idle else None
        if connection is None:
            connection = self._open()
        try:
            reply = connection.call(*args)
        except ReplyError as exc:
            self._give_back(connection)
            raise self._classified(exc, f"Reference at {self.host}:{self.port} refused {args[0]!r}") from None
        except OSError as exc:
            connection.close()
            raise TransientStorageError(f"lost the connection to Reference: {type(exc).__name__}: {exc}") from None
        self._give_back(connection)
        return reply

    def _give_back(self, connection: Connection) -> None:
        with self._lock:
            if self._idle is not None:
                self._idle.append(connection)
                return
        connection.close()  # disconnected meanwhile

    @staticmethod
    def _classified(exc: ReplyError, what: str) -> StorageError:
        error = TransientStorageError if exc.code in TRANSIENT_CODES else StorageError
        return error(f"{what}: {exc}")

    # -- records ---------------------------------------------------------------------------------------------

    def key(self, task_id: str) -> str:
        return self.key_prefix + task_id

    def store(self, node_args: Any, flow_name: str, task_name: str, task_id: str, result: Any) -> str:
        jsonpolicy.check(result)
        record = {"flow_name": flow_name, "task_name": task_name, "node_args": node_args, "result": result}
        return self._write(self.key(task_id), self.encode(record))

    def store_error(self, node_args: Any, flow_name: str, task_name: str, task_id: str, exc_info: ExcInfo) -> str:
        error = describe_error(exc_info)
        record = {"flow_name": flow_name, "task_name": task_name, "node_args": node_args, "error": error}
        return self._write(self.key(task_id), self.encode(record))

    def retrieve(self, flow_name: str, task_name: str, task_id: str) -> Any:
        record = self._record(task_id)
        if "result" not in record:
            raise SelinonMissingDataException(f"task {task_id!r} has no result")
        return record["result"]

    def retrieve_error(self, flow_name: str, task_name: str, task_id: str) -> dict[str, str]:
        record = self._record(task_id)
        if "error" not in record:
            raise SelinonMissingDataException(f"task {task_id!r} has no error recorded")
        return dict(record["error"])

    def retrieve_owner(self, flow_name: str, task_name: str, task_id: str) -> tuple[str | None, str | None]:
        record = self._record(task_id)
        return record["flow_name"], record["task_name"]

    def delete(self, flow_name: str, task_name: str, task_id: str) -> None:
        if self._call("DEL", self.key(task_id)) == 0:
            raise SelinonMissingDataException(f"no record for task {task_id!r}")

    def _record(self, task_id: str) -> dict[str, Any]:
        document = self._read(self.key(task_id))
        if document is None:
            raise SelinonMissingDataException(f"no record for task {task_id!r}")
        return self.decode(document)

    # The parts planted bugs replace.

    def encode(self, record: dict[str, Any]) -> bytes:
        return json.dumps(record, ensure_ascii=False, allow_nan=False).encode()

    def decode(self, document: bytes) -> dict[str, Any]:
        record: dict[str, Any] = json.loads(document)
        return record

    def _write(self, key: str, document: bytes) -> str:
        self._call("SET", key, document)
        return key

    def _read(self, key: str) -> bytes | None:
        document: bytes | None = self._call("GET", key)
        return document
