"""Selinon 1.x's table, its layout, and storages written for it: with Selinon 1.4 itself where marked."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import MakeStorage, engine_for
from selinon_storage_postgresql import PostgreSQL, SqlStorage
from sqlalchemy.engine import make_url

from selinon import SelinonMissingDataException, StorageError
from selinon.records import ForeignRecord
from selinon.testing.selinon1 import run_selinon1

FLOW, TASK = "flow1x", "Hello"
RESULT = {"greeting": "Hello, x!", "n": 2**40, "nested": [1.5, None, True, "ž"]}

SELINON1 = """
from selinon.storages.postgresql import PostgreSQL
adapter = PostgreSQL(ARGS["url"])
adapter.connect()
if ARGS["action"] == "store":
    OUT = adapter.store({"x": 1}, ARGS["flow"], ARGS["task"], ARGS["task_id"], ARGS["result"])
else:
    OUT = adapter.retrieve(ARGS["flow"], ARGS["task"], ARGS["task_id"])
adapter.disconnect()
"""


def tid() -> str:
    return f"pg1x-{uuid.uuid4()}"


@pytest.fixture
def database_url(postgresql_url: str, fresh_database: str) -> str:
    """A database of its own, since Selinon 1.x's table is always named `result`; dropped afterwards."""
    return make_url(postgresql_url).set(database=fresh_database).render_as_string(hide_password=False)


def selinon1(url: str, action: str, task_id: str, result: Any = None) -> Any:
    url = url.replace("postgresql+psycopg://", "postgresql://")
    return run_selinon1(SELINON1, url=url, action=action, flow=FLOW, task=TASK, task_id=task_id, result=result)


def connected(url: str, **options: Any) -> SqlStorage:
    adapter = PostgreSQL(connection_string=url, **options)
    adapter.connect()
    return adapter


@pytest.mark.selinon1
def test_table_of_selinon_1_4_read_in_place(database_url: str) -> None:
    ids = [tid() for _ in range(3)]
    values = [RESULT, None, "Hello, x!"]
    for task_id, value in zip(ids, values, strict=True):
        selinon1(database_url, "store", task_id, value)
    adapter = connected(database_url, layout="selinon1")
    try:
        assert [adapter.retrieve(FLOW, TASK, task_id) for task_id in ids] == values
        adapter.delete(FLOW, TASK, ids[0])
        with pytest.raises(SelinonMissingDataException):
            adapter.retrieve(FLOW, TASK, ids[0])
    finally:
        adapter.disconnect()
    with pytest.raises(StorageError, match="table 'result' .* is Selinon 1.x's: add `layout: selinon1`"):
        connected(database_url, table_name="result")


@pytest.mark.selinon1
def test_selinon1_layout_writes_what_selinon_1_4_reads(database_url: str) -> None:
    adapter = connected(database_url, layout="selinon1")  # creates 1.x's table in a new database
    try:
        task_id = tid()
        first = adapter.store({"x": 1}, FLOW, TASK, task_id, {"old": True})
        assert adapter.store({"x": 1}, FLOW, TASK, task_id, RESULT) == first  # one row per task id
        assert selinon1(database_url, "retrieve", task_id) == RESULT
        other = tid()
        selinon1(database_url, "store", other, "from 1.4")  # 1.4 writes into the table this adapter made
        assert adapter.retrieve(FLOW, TASK, other) == "from 1.4"
        with pytest.raises(NotImplementedError, match="errors are not stored, as in Selinon 1.x"):
            adapter.store_error(None, FLOW, TASK, task_id, (RuntimeError, RuntimeError("x"), None))
    finally:
        adapter.disconnect()


@pytest.mark.parametrize("backend", ["sqlite", "mariadb"])
def test_selinon1_layout_on_other_databases(
    backend: str, request: pytest.FixtureRequest, make_storage: MakeStorage
) -> None:
    url = request.getfixturevalue({"sqlite": "sqlite_url", "mariadb": "mysql_url"}[backend])
    adapter = make_storage(url, table_name=f"selinon1_{uuid.uuid4().hex[:12]}", layout="selinon1")
    adapter.connect()
    try:
        task_id = tid()
        adapter.store(None, FLOW, TASK, task_id, 1)
        adapter.store(None, FLOW, TASK, task_id, RESULT)
        assert adapter.retrieve(FLOW, TASK, task_id) == RESULT
    finally:
        adapter.disconnect()


def test_selinon1_layout_refuses_a_table_that_is_not_selinon_1s(postgresql_url: str, make_storage: MakeStorage) -> None:
    native = make_storage(postgresql_url)
    native.connect()
    native.disconnect()
    with pytest.raises(StorageError, match="is not Selinon 1.x's .*with `layout: selinon1` name 1.x's table"):
        make_storage(postgresql_url, layout="selinon1").connect()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("UPDATE {table} SET result = 'Hello, x!' WHERE task_id = :id", "is not JSON"),
        ("UPDATE {table} SET result = NULL, error = NULL WHERE task_id = :id", "holds neither a result nor an error"),
        ("UPDATE {table} SET task_id = 'another' WHERE task_id = :id", "keyed for task .* but holds task 'another'"),
    ],
)
def test_foreign_or_malformed_rows_raise(sqlite_url: str, make_storage: MakeStorage, change: str, message: str) -> None:
    adapter = make_storage(sqlite_url)
    adapter.connect()
    task_id = tid()
    adapter.store(None, FLOW, TASK, task_id, RESULT)
    engine = engine_for(sqlite_url)
    with engine.begin() as conn:
        conn.execute(sa.text(change.format(table=adapter.table_name)), {"id": task_id})
    engine.dispose()
    with pytest.raises(ForeignRecord, match=message):
        adapter.retrieve(FLOW, TASK, task_id)
    adapter.disconnect()


def test_selinon_1_row_of_another_task_raises(database_url: str) -> None:
    adapter = connected(database_url, layout="selinon1")
    task_id = tid()
    adapter.store(None, FLOW, "Other", task_id, 1)
    with pytest.raises(ForeignRecord, match="record of task 'Other', not 'Hello'"):
        adapter.retrieve(FLOW, TASK, task_id)
    adapter.disconnect()


def test_another_programs_table_is_refused(postgresql_url: str, make_storage: MakeStorage) -> None:
    adapter = make_storage(postgresql_url, table_name=f"foreign_{uuid.uuid4().hex[:12]}")
    engine = engine_for(postgresql_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {adapter.table_name} (task_id text, result text)"))
    engine.dispose()
    for layout in ("native", "selinon1"):
        with pytest.raises(StorageError, match="set `table_name` to a new table|name 1.x's table"):
            make_storage(postgresql_url, table_name=adapter.table_name, layout=layout).connect()


def test_subclass_written_for_selinon_1(database_url: str) -> None:
    """A project's own storage as written for Selinon 1.x (fabric8-analytics' pattern): its own ORM model, created
    on connect, stored and queried through ``self.session``; and 1.x's ``Result`` model through it too."""
    from sqlalchemy.orm import declarative_base

    from selinon.storages.postgresql import PostgreSQL as Selinon1PostgreSQL
    from selinon.storages.postgresql import Result

    base = declarative_base()

    class WorkerResult(base):  # type: ignore[misc, valid-type]
        __tablename__ = "worker_results"
        id = sa.Column(sa.Integer, primary_key=True)
        worker = sa.Column(sa.String(255))
        worker_id = sa.Column(sa.String(64), unique=True)
        task_result = sa.Column(sa.dialects.postgresql.JSONB)

    class ProjectPostgres(Selinon1PostgreSQL):  # type: ignore[misc, valid-type]
        def connect(self) -> None:
            super().connect()
            base.metadata.create_all(self.engine)
            Result.metadata.create_all(self.engine)

        def store(self, node_args: Any, flow_name: str, task_name: str, task_id: str, result: Any) -> Any:
            record = WorkerResult(worker=task_name, worker_id=task_id, task_result=result)
            try:
                self.session.add(record)
                self.session.add(Result(node_args, flow_name, task_name, task_id, result))
                self.session.commit()
            except Exception:
                self.session.rollback()
                raise
            return record.id

        def retrieve(self, flow_name: str, task_name: str, task_id: str) -> Any:
            record = self.session.query(WorkerResult).filter_by(worker_id=task_id).one()
            assert record.worker == task_name
            return record.task_result

    adapter = ProjectPostgres(database_url, encoding="utf-8", echo=False)
    assert adapter.session is None and adapter.engine is None
    adapter.connect()
    try:
        task_id = tid()
        assert isinstance(adapter.store({"x": 1}, FLOW, TASK, task_id, RESULT), int)
        assert adapter.retrieve(FLOW, TASK, task_id) == RESULT
        assert adapter.session.query(Result).filter_by(task_id=task_id).one().result == RESULT
        # the row 1.x's model wrote is a record the 1.x layout reads
        assert connected(database_url, layout="selinon1").retrieve(FLOW, TASK, task_id) == RESULT
    finally:
        adapter.disconnect()
    assert adapter.session is None
