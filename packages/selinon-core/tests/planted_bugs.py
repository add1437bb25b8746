"""The reference adapter with one classic bug planted in each subclass; ``CAUGHT_BY`` names the tests of the
contract suite (``Contract``) or the fault drills (``Drills``) that must fail on it."""

from __future__ import annotations

import json
import threading
import unicodedata
import uuid
from typing import Any

from reference_adapter import Connection, Reference

from selinon import SelinonMissingDataException, TransientStorageError

# -- bugs the contract suite caught from the start -----------------------------------------------------------


class InsertReturnsOldest(Reference):
    """Inserts a record per store instead of replacing it, and reads the first."""

    def _write(self, key: str, document: bytes) -> str:
        self._call("RPUSH", key, document)
        return key

    def _read(self, key: str) -> bytes | None:
        document: bytes | None = self._call("LINDEX", key, "0")
        return document


class MissingReturnsNone(Reference):
    def retrieve(self, flow_name: str, task_name: str, task_id: str) -> Any:
        try:
            return super().retrieve(flow_name, task_name, task_id)
        except SelinonMissingDataException:
            return None


class StoreErrorDoesNothing(Reference):
    def store_error(self, node_args: Any, flow_name: str, task_name: str, task_id: str, exc_info: Any) -> str:
        return self.key(task_id)


class StoreReturnsNone(Reference):
    def store(self, node_args: Any, flow_name: str, task_name: str, task_id: str, result: Any) -> Any:
        super().store(node_args, flow_name, task_name, task_id, result)
        return None


class MangledUnicode(Reference):
    def encode(self, record: dict[str, Any]) -> bytes:
        return json.dumps(record, ensure_ascii=False).encode("latin-1", "replace")


class MangledNumbers(Reference):
    def decode(self, document: bytes) -> dict[str, Any]:
        record: dict[str, Any] = json.loads(document, parse_int=float)
        return record


class FlattenedNesting(Reference):
    """Keeps three levels of nesting; deeper values come back as their text."""

    def encode(self, record: dict[str, Any]) -> bytes:
        def flatten(value: Any, depth: int) -> Any:
            if isinstance(value, dict):
                return {k: flatten(v, depth + 1) for k, v in value.items()} if depth < 3 else str(value)
            if isinstance(value, list):
                return [flatten(v, depth + 1) for v in value] if depth < 3 else str(value)
            return value

        return super().encode({**record, "result": flatten(record.get("result"), 0)})


class AlwaysConnected(Reference):
    def is_connected(self) -> bool:
        return True


class SharedConnection(Reference):
    """Declared thread-safe, yet every thread talks over one connection."""

    def _call(self, *args: str | bytes) -> Any:
        with self._lock:
            if self._idle is None:
                raise TransientStorageError("not connected")
            if not self._idle:
                self._idle.append(self._open())
            connection = self._idle[0]
        try:
            return connection.call(*args)
        except OSError as exc:
            raise TransientStorageError(f"lost the connection: {exc}") from None


# -- bugs it missed ------------------------------------------------------------------------------------------


class InsertReturnsNewest(InsertReturnsOldest):
    """Inserts a record per store and reads the newest: every read is right, and records pile up."""

    def _read(self, key: str) -> bytes | None:
        document: bytes | None = self._call("LINDEX", key, "-1")
        return document


class NewRecordIdEachStore(Reference):
    def store(self, node_args: Any, flow_name: str, task_name: str, task_id: str, result: Any) -> str:
        super().store(node_args, flow_name, task_name, task_id, result)
        return str(uuid.uuid4())


class ConstantRecordId(Reference):
    def _write(self, key: str, document: bytes) -> str:
        return str(self._call("SET", key, document))  # "OK"


class DisconnectLeavesSockets(Reference):
    """Keeps every connection it opens in a list of its own, and forgets the pool on disconnect unclosed."""

    def _connection(self) -> Connection:
        connection = super()._connection()
        self.__dict__.setdefault("opened", []).append(connection)
        return connection

    def disconnect(self) -> None:
        self._idle = None


class CaseFoldedIds(Reference):
    def key(self, task_id: str) -> str:
        return super().key(task_id.lower())


class TrimmedIds(Reference):
    def key(self, task_id: str) -> str:
        return super().key(task_id.strip())


class NormalisedIds(Reference):
    def key(self, task_id: str) -> str:
        return super().key(unicodedata.normalize("NFC", task_id))


class ReprShowsPassword(Reference):
    def __repr__(self) -> str:
        return f"<{type(self).__name__} redis://{self.username or ''}:{self.password}@{self.host}:{self.port}>"


class ErrorShowsPassword(Reference):
    def _connection(self) -> Connection:
        try:
            return super()._connection()
        except OSError as exc:
            raise OSError(f"redis://:{self.password}@{self.host}:{self.port}: {exc}") from exc


class NothingTransient(Reference):
    transient_errors = ()


class EverythingTransient(Reference):
    transient_errors = (Exception,)


class NoConnectTimeout(Reference):
    def _connection(self) -> Connection:
        return Connection(self.host, self.port, None)  # type: ignore[arg-type]


class NoReadTimeout(Reference):
    """Waits for a reply as long as it takes."""

    def _open(self) -> Connection:
        connection = super()._open()
        connection.sock.settimeout(None)
        return connection


class ConnectNotIdempotent(Reference):
    """Opens a connection on every connect(), and keeps it."""

    def connect(self) -> None:
        connection = self._open()
        with self._lock:
            self._idle = [*(self._idle or []), connection]


_SHARED: list[Connection] = []
_SHARED_LOCK = threading.Lock()


class SharedAcrossInstances(Reference):
    """Keeps its connections in the module, as a driver's global pool would: a forked child's new adapter
    talks over the parent's sockets."""

    def connect(self) -> None:
        with _SHARED_LOCK:
            if not _SHARED:
                _SHARED.append(self._open())
        self._idle = _SHARED


CAUGHT_BY: dict[type[Reference], list[str]] = {
    InsertReturnsOldest: ["Contract::test_store_again_replaces"],
    MissingReturnsNone: ["Contract::test_missing_record"],
    StoreErrorDoesNothing: ["Contract::test_store_error_is_readable"],
    StoreReturnsNone: ["Contract::test_round_trip"],
    MangledUnicode: ["Contract::test_round_trip"],
    MangledNumbers: ["Contract::test_round_trip"],
    FlattenedNesting: ["Contract::test_round_trip"],
    AlwaysConnected: ["Contract::test_lifecycle"],
    SharedConnection: ["Contract::test_many_threads", "Drills::test_load_through_the_pool"],
    InsertReturnsNewest: ["Contract::test_one_record_per_task_id"],
    NewRecordIdEachStore: ["Contract::test_record_id_names_the_task_record"],
    ConstantRecordId: ["Contract::test_record_id_names_the_task_record"],
    DisconnectLeavesSockets: ["Contract::test_connections_open_once_and_close"],
    CaseFoldedIds: ["Contract::test_look_alike_ids_are_separate"],
    TrimmedIds: ["Contract::test_look_alike_ids_are_separate"],
    NormalisedIds: ["Contract::test_look_alike_ids_are_separate"],
    ReprShowsPassword: ["Contract::test_secret_stays_out_of_repr_and_errors"],
    ErrorShowsPassword: ["Contract::test_secret_stays_out_of_repr_and_errors"],
    NothingTransient: ["Drills::test_cut_connections_lose_and_double_nothing"],
    EverythingTransient: [
        "Drills::test_refused_credentials_are_not_retried",
        "Drills::test_a_result_that_cannot_be_stored_is_not_retried",
    ],
    NoConnectTimeout: ["Drills::test_connect_fails_within_the_timeout"],
    NoReadTimeout: ["Drills::test_a_server_that_stops_answering_fails_calls_within_the_read_timeout"],
    ConnectNotIdempotent: ["Contract::test_connections_open_once_and_close"],
    SharedAcrossInstances: ["Drills::test_forked_children_use_connections_of_their_own"],
}
