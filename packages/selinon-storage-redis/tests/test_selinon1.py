"""Selinon 1.x's records, its layout, and storages written for it: with Selinon 1.4 itself where marked."""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from conftest import MakeRedis

from selinon import SelinonMissingDataException
from selinon.errors import ConfigurationError
from selinon.records import ForeignRecord
from selinon.storages.redis import Redis  # as a project written for Selinon 1.x imports it
from selinon.testing.selinon1 import run_selinon1

FLOW, TASK = "flow1x", "Hello"
RESULT = {"greeting": "Hello, x!", "n": 14, "nested": [1.5, None, True, "ž"]}

SELINON1_STORE = """
from selinon.storages.redis import Redis
adapter = Redis(host=ARGS["host"], port=ARGS["port"], db=ARGS["db"])
adapter.connect()
OUT = adapter.store({"x": 1}, ARGS["flow"], ARGS["task"], ARGS["task_id"], ARGS["result"])
"""

SELINON1_RETRIEVE = """
from selinon.storages.redis import Redis
adapter = Redis(host=ARGS["host"], port=ARGS["port"], db=ARGS["db"])
adapter.connect()
OUT = adapter.retrieve(ARGS["flow"], ARGS["task"], ARGS["task_id"])
"""


@pytest.fixture
def server(redis_url: str) -> dict[str, Any]:
    parts = urlsplit(redis_url)
    return {"host": parts.hostname, "port": parts.port or 6379, "db": int(parts.path.strip("/") or 0)}


@pytest.fixture
def task_id(key_prefix: str) -> str:
    """A bare task id, as Selinon 1.x keyed records, that still falls under this session's cleanup."""
    return f"{key_prefix}{uuid.uuid4()}"


@pytest.mark.selinon1
def test_records_of_selinon_1_4_read_in_place(make_redis: MakeRedis, server: dict[str, Any], task_id: str) -> None:
    run_selinon1(SELINON1_STORE, **server, flow=FLOW, task=TASK, task_id=task_id, result=RESULT)
    for adapter in (make_redis(key_prefix=None, layout="selinon1"), make_redis(key_prefix="")):
        adapter.connect()
        assert adapter.retrieve(FLOW, TASK, task_id) == RESULT
    adapter.delete(FLOW, TASK, task_id)
    with pytest.raises(SelinonMissingDataException):
        adapter.retrieve(FLOW, TASK, task_id)


@pytest.mark.selinon1
def test_selinon1_layout_writes_what_selinon_1_4_reads(
    make_redis: MakeRedis, server: dict[str, Any], task_id: str
) -> None:
    adapter = make_redis(key_prefix=None, layout="selinon1")
    adapter.connect()
    assert adapter.store({"x": 1}, FLOW, TASK, task_id, RESULT) == task_id
    assert run_selinon1(SELINON1_RETRIEVE, **server, flow=FLOW, task=TASK, task_id=task_id) == RESULT


def test_selinon1_layout_writes_selinon_1_records(make_redis: MakeRedis, driver: redis.Redis, task_id: str) -> None:
    adapter = make_redis(key_prefix=None, layout="selinon1")
    adapter.connect()
    adapter.store({"x": 1}, FLOW, TASK, task_id, RESULT)
    record = {"node_args": {"x": 1}, "flow_name": FLOW, "task_name": TASK, "task_id": task_id, "result": RESULT}
    assert json.loads(driver.get(task_id) or b"") == record
    with pytest.raises(NotImplementedError, match="errors are not stored, as in Selinon 1.x"):
        adapter.store_error(None, FLOW, TASK, task_id, (RuntimeError, RuntimeError("x"), None))
    assert json.loads(driver.get(task_id) or b"") == record  # the result stays, as with 1.x
    # a record of this project's format is read in the 1.x layout too
    native = make_redis(key_prefix="")
    native.connect()
    native.store(None, FLOW, TASK, task_id, "native")
    assert adapter.retrieve(FLOW, TASK, task_id) == "native"


def test_selinon1_layout_keeps_records_at_the_bare_task_id(make_redis: MakeRedis) -> None:
    with pytest.raises(ConfigurationError, match="at the bare task id: remove `key_prefix`"):
        make_redis(key_prefix="selinon:", layout="selinon1")
    with pytest.raises(ConfigurationError, match="`layout` must be 'native'"):
        make_redis(layout="selinon2")
    assert make_redis(key_prefix=None).key_prefix == "selinon:"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"x": 14}', "does not hold a Selinon record .no 'selinon_record' marker"),
        (b'{"result": "Hello, x!"}', "does not hold a Selinon record"),
        (b"Hello, x!", "does not hold a JSON document"),
        (b"\x80\x81", "does not hold a JSON document in UTF-8"),
        (b"14", "a int, not an object"),
        (b'{"selinon_record": 9, "result": 1}', "format 9, which this adapter does not read"),
    ],
)
def test_foreign_or_malformed_values_raise(
    make_redis: MakeRedis, driver: redis.Redis, task_id: str, raw: bytes, message: str
) -> None:
    driver.set(task_id, raw)
    for adapter in (make_redis(key_prefix=""), make_redis(key_prefix=None, layout="selinon1")):
        adapter.connect()
        with pytest.raises(ForeignRecord, match=message):
            adapter.retrieve(FLOW, TASK, task_id)


def test_another_programs_key_raises(make_redis: MakeRedis, driver: redis.Redis, task_id: str) -> None:
    driver.hset(task_id, "field", "value")  # not a string at all
    adapter = make_redis(key_prefix="")
    adapter.connect()
    with pytest.raises(ForeignRecord, match="holds a Redis hash, not a Selinon record"):
        adapter.retrieve(FLOW, TASK, task_id)


def test_selinon_1_record_of_another_task_raises(make_redis: MakeRedis, driver: redis.Redis, task_id: str) -> None:
    record = {"node_args": None, "flow_name": FLOW, "task_name": "Other", "task_id": task_id, "result": 1}
    driver.set(task_id, json.dumps(record))
    adapter = make_redis(key_prefix="")
    adapter.connect()
    with pytest.raises(ForeignRecord, match="record of task 'Other'"):
        adapter.retrieve(FLOW, TASK, task_id)


def test_records_written_before_the_marker_are_read(
    make_redis: MakeRedis, driver: redis.Redis, key_prefix: str
) -> None:
    task_id = str(uuid.uuid4())
    driver.set(key_prefix + task_id, json.dumps({"flow_name": FLOW, "task_name": TASK, "node_args": None, "result": 7}))
    adapter = make_redis()
    adapter.connect()
    assert adapter.retrieve(FLOW, TASK, task_id) == 7


class Selinon1Storage(Redis):
    """A project's own storage as written for Selinon 1.x: it keeps an index beside each result through
    ``self.conn``, and reads ``self.charset``."""

    def store(self, node_args: Any, flow_name: str, task_name: str, task_id: str, result: Any) -> Any:
        record_id = super().store(node_args, flow_name, task_name, task_id, result)
        self.conn.sadd(f"{task_id}:index", task_name.encode(self.charset))  # type: ignore[union-attr]
        return record_id

    def tasks(self, task_id: str) -> set[str]:
        return {name.decode(self.charset) for name in self.conn.smembers(f"{task_id}:index")}  # type: ignore[union-attr]


def test_subclass_written_for_selinon_1(redis_url: str, task_id: str) -> None:
    parts = urlsplit(redis_url)
    adapter = Selinon1Storage(parts.hostname, parts.port, int(parts.path.strip("/") or 0), layout="selinon1")
    assert adapter.conn is None
    adapter.connect()
    try:
        assert isinstance(adapter.conn, redis.Redis)
        adapter.store({"x": 1}, FLOW, TASK, task_id, RESULT)
        assert adapter.tasks(task_id) == {TASK}
        assert adapter.retrieve(FLOW, TASK, task_id) == RESULT
    finally:
        adapter.conn.delete(f"{task_id}:index")  # type: ignore[union-attr]
        adapter.disconnect()
    assert adapter.conn is None
