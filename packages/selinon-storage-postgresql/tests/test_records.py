"""How records are laid out in each database, and what the contract suite does not pin down."""

from __future__ import annotations

import hashlib
import json
import math
import sys
import threading
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import MakeStorage, engine_for
from selinon_storage_postgresql import SqlStorage

from selinon import SelinonMissingDataException, StorageError


def rows(url: str, table: str, task_id: str) -> list[dict[str, Any]]:
    """The rows of a task id, read straight from the database through the driver."""
    key = hashlib.sha256(task_id.encode()).hexdigest()
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            found = conn.execute(sa.text(f"SELECT * FROM {table} WHERE task_key = :key"), {"key": key})
            return [dict(row._mapping) for row in found]
    finally:
        engine.dispose()


def as_json(value: Any) -> Any:
    """A JSON column as a value: drivers hand some back as text, psycopg decodes PostgreSQL's json itself."""
    return json.loads(value) if isinstance(value, str | bytes) else value


@pytest.fixture
def storage(backend_url: str, make_storage: MakeStorage) -> Any:
    adapter = make_storage(backend_url)
    adapter.connect()
    yield adapter
    adapter.disconnect()


def test_upsert_leaves_exactly_one_record(storage: SqlStorage, backend_url: str) -> None:
    task_id = f"upsert-{uuid.uuid4()}"
    first = storage.store({"try": 1}, "flow", "task", task_id, {"attempt": 1})
    second = storage.store({"try": 2}, "flow2", "task2", task_id, {"attempt": 2})
    try:
        raise RuntimeError("third attempt failed")
    except RuntimeError:
        third = storage.store_error({"try": 3}, "flow3", "task3", task_id, sys.exc_info())
    fourth = storage.store({"try": 4}, "flow", "task", task_id, {"attempt": 4})
    assert first == second == third == fourth  # the record keeps its id
    found = rows(backend_url, storage.table_name, task_id)
    assert len(found) == 1
    assert found[0]["id"] == first
    assert storage.retrieve("flow", "task", task_id) == {"attempt": 4}


def test_record_layout(storage: SqlStorage, backend_url: str) -> None:
    task_id = f"layout-{uuid.uuid4()}"
    record_id = storage.store({"url": "https://example"}, "myFlow", "myTask", task_id, {"n": 2**64})
    [row] = rows(backend_url, storage.table_name, task_id)
    assert row["id"] == record_id
    assert row["task_key"] == hashlib.sha256(task_id.encode()).hexdigest()
    assert (row["task_id"], row["flow_name"], row["task_name"]) == (task_id, "myFlow", "myTask")
    assert as_json(row["node_args"]) == {"url": "https://example"}
    assert as_json(row["result"]) == {"n": 2**64}
    assert row["error"] is None
    assert row["stored_at"] is not None
    try:
        raise KeyError("gone")
    except KeyError:
        storage.store_error(None, "myFlow", "myTask", task_id, sys.exc_info())
    [row] = rows(backend_url, storage.table_name, task_id)
    assert row["result"] is None  # the whole record is replaced: the earlier result is gone
    assert as_json(row["node_args"]) is None
    assert as_json(row["error"])["type"] == "builtins.KeyError"


def test_column_types(storage: SqlStorage, backend_url: str) -> None:
    engine = engine_for(backend_url)
    try:
        columns = {c["name"]: c for c in sa.inspect(engine).get_columns(storage.table_name)}
        unique = sa.inspect(engine).get_unique_constraints(storage.table_name)
        indexes = sa.inspect(engine).get_indexes(storage.table_name)
        backend = engine.dialect.name
    finally:
        engine.dispose()
    assert set(columns) == {
        "id", "task_key", "task_id", "flow_name", "task_name", "node_args", "result", "error", "stored_at"
    }  # fmt: skip
    expected = {"postgresql": "JSON", "sqlite": "TEXT", "mysql": "LONGTEXT"}[backend]  # MariaDB's JSON is LONGTEXT
    assert type(columns["result"]["type"]).__name__ == expected
    unique_columns = [c["column_names"] for c in unique] + [i["column_names"] for i in indexes if i["unique"]]
    assert ["task_key"] in unique_columns


EXACT = {
    "int beyond 64 bits": 2**63 + 11,
    "negative beyond 64 bits": -(2**70),
    "huge int": 2**200,
    "float with exponent": 1e300,
    "float that looks integral": 1e16,
    "smallest float": 5e-324,
    "negative zero": -0.0,
    "number-like string": "12",
    "NUL in a string": "a\x00b",
    "bare null": None,
    "nested big": {"a": [2**64, 1.5e-7, {"b": -(2**65)}]},
}


@pytest.mark.parametrize("value", list(EXACT.values()), ids=list(EXACT))
def test_json_values_round_trip_exactly(storage: SqlStorage, value: Any) -> None:
    """Same value, same type (an integral float stays a float), same sign of zero."""
    task_id = f"exact-{uuid.uuid4()}"
    storage.store(value, "flow", "task", task_id, value)
    back = storage.retrieve("flow", "task", task_id)
    assert back == value and type(back) is type(value) and repr(back) == repr(value)
    if isinstance(value, float):
        assert math.copysign(1, back) == math.copysign(1, value)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "\ud800", {1, 2}, b"bytes"])
def test_non_json_results_refused_before_io(storage: SqlStorage, backend_url: str, bad: Any) -> None:
    task_id = f"bad-{uuid.uuid4()}"
    with pytest.raises((TypeError, ValueError)):
        storage.store(None, "flow", "task", task_id, bad)
    assert rows(backend_url, storage.table_name, task_id) == []


def test_nul_in_task_id_on_postgresql_is_a_storage_error(postgresql_url: str, make_storage: MakeStorage) -> None:
    """PostgreSQL text cannot hold NUL: the id is refused with an error naming the server, and nothing changes."""
    storage = make_storage(postgresql_url)
    storage.connect()
    try:
        with pytest.raises(StorageError, match=r"store failed in PostgreSQL at .*: DataError: .*NUL"):
            storage.store(None, "flow", "task", "nul\x00id", 1)
        with pytest.raises(SelinonMissingDataException):
            storage.retrieve("flow", "task", "nul")
    finally:
        storage.disconnect()


def nested(depth: int) -> Any:
    """A value ``depth`` arrays and objects deep, alternating, around the string "bottom"."""
    value: Any = "bottom"
    for level in range(depth):
        value = [value] if level % 2 else {"down": value}
    return value


@pytest.mark.parametrize("column", ["result", "node_args"])
def test_too_deep_for_mariadb_said_plainly(column: str, mysql_url: str, make_storage: MakeStorage) -> None:
    """MariaDB's JSON check refuses values nested more than 31 deep: the error says which value, how deep it is,
    the limit and what to do, and the record stays as it was; 31 levels are stored and read back."""
    storage = make_storage(mysql_url)
    storage.connect()
    try:
        task_id = f"deep-{uuid.uuid4()}"
        storage.store({"n": 1}, "flow", "task", task_id, "before")
        deepest = nested(31)
        storage.store(deepest if column == "node_args" else None, "flow", "task", task_id, deepest)
        assert storage.retrieve("flow", "task", task_id) == deepest
        storage.store({"n": 1}, "flow", "task", task_id, "before")
        too_deep = nested(40)
        with pytest.raises(StorageError) as raised:
            if column == "result":
                storage.store({"n": 2}, "flow", "task", task_id, too_deep)
            else:
                storage.store(too_deep, "flow", "task", task_id, "after")
        assert str(raised.value) == (
            f"store failed in MySQL/MariaDB at 127.0.0.1:3306/test: the {column} of task {task_id!r} nests 40 arrays "
            "and objects deep, and MariaDB's JSON columns take at most 31; nothing was written. Store a flatter "
            "value (for example the deepest part as a JSON string), or use PostgreSQL"
        )
        assert storage.retrieve("flow", "task", task_id) == "before"
        assert [as_json(row["node_args"]) for row in rows(mysql_url, storage.table_name, task_id)] == [{"n": 1}]
    finally:
        storage.disconnect()


def test_not_connected_is_a_storage_error(postgresql_url: str, make_storage: MakeStorage) -> None:
    storage = make_storage(postgresql_url)
    with pytest.raises(StorageError, match="is not connected; call connect"):
        storage.retrieve("flow", "task", "x")


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_many_processes_create_the_table_at_once(
    backend: str, make_storage: MakeStorage, request: pytest.FixtureRequest
) -> None:
    """Workers that start together all connect: the table is created once, without a catalogue race."""
    url = request.getfixturevalue({"postgresql": "postgresql_url", "mariadb": "mysql_url"}[backend])
    table = f"selinon_race_{uuid.uuid4().hex[:10]}"
    adapters = [make_storage(url, table_name=table) for _ in range(8)]  # an engine each, as separate processes
    barrier = threading.Barrier(len(adapters))
    errors: list[BaseException] = []

    def connect(adapter: SqlStorage) -> None:
        barrier.wait()
        try:
            adapter.connect()
            adapter.store(None, "flow", "task", f"race-{uuid.uuid4()}", 1)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=connect, args=(a,)) for a in adapters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for adapter in adapters:
        adapter.disconnect()
    assert not errors, errors[:2]


def test_existing_table_of_another_layout_is_reported(backend_url: str, created_tables: set[tuple[str, str]]) -> None:
    table = f"selinon_other_{uuid.uuid4().hex[:10]}"
    created_tables.add((backend_url, table))
    engine = engine_for(backend_url)
    try:
        with engine.begin() as conn:  # Selinon 1.x's table had this shape
            conn.execute(sa.text(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, task_id VARCHAR(255), result TEXT)"))
    finally:
        engine.dispose()
    storage = SqlStorage(connection_string=backend_url, table_name=table)
    with pytest.raises(StorageError, match=f"table '{table}' in .* exists but has not the columns this adapter uses"):
        storage.connect()
    assert not storage.is_connected()
