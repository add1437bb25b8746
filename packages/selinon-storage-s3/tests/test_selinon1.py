"""Selinon 1.x's objects, its layout, and storages written for it: with Selinon 1.4 itself where marked."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from conftest import Endpoint
from selinon_storage_s3 import S3Storage

from selinon.records import ForeignRecord
from selinon.testing.selinon1 import run_selinon1

FLOW, TASK = "flow1x", "Hello"
RESULT = {"greeting": "Hello, x!", "n": 14, "nested": [1.5, None, True, "ž"]}

SELINON1 = """
from selinon.storages.s3 import S3
adapter = S3(ARGS["bucket"], endpoint_url=ARGS["url"], aws_access_key_id=ARGS["key"],
             aws_secret_access_key=ARGS["secret"], region_name=ARGS["region"], serialize_json=ARGS["json"])
adapter.connect()
if ARGS["action"] == "store":
    value = ARGS["result"].encode("latin-1") if ARGS["raw"] else ARGS["result"]
    OUT = adapter.store(None, ARGS["flow"], ARGS["task"], ARGS["task_id"], value)
else:
    OUT = adapter.retrieve(ARGS["flow"], ARGS["task"], ARGS["task_id"])
"""


def tid() -> str:
    return f"s3-1x-{uuid.uuid4()}"


def selinon1(s3: Endpoint, bucket: str, action: str, task_id: str, result: Any = None, json: bool = True) -> Any:
    return run_selinon1(
        SELINON1, bucket=bucket, url=s3.url, key=s3.access_key, secret=s3.secret_key, region=s3.region,
        json=json, raw=not json, action=action, flow=FLOW, task=TASK, task_id=task_id, result=result,
    )  # fmt: skip


@pytest.fixture
def bucket(s3: Endpoint) -> str:
    """A bucket that exists: Selinon 1.4's adapter cannot create one in us-east-1."""
    name = s3.new_bucket()
    adapter = s3.storage(bucket=name)
    adapter.connect()
    adapter.disconnect()
    return name


def connected(s3: Endpoint, **options: Any) -> S3Storage:
    adapter = s3.storage(**options)
    adapter.connect()
    return adapter


@pytest.mark.selinon1
def test_objects_of_selinon_1_4_read_in_place(s3: Endpoint, bucket: str) -> None:
    as_json, as_bytes = tid(), tid()
    selinon1(s3, bucket, "store", as_json, RESULT)
    selinon1(s3, bucket, "store", as_bytes, "raw \xff bytes", json=False)
    assert connected(s3, bucket=bucket, layout="selinon1", serialize_json=True).retrieve(FLOW, TASK, as_json) == RESULT
    assert connected(s3, bucket=bucket, layout="selinon1").retrieve(FLOW, TASK, as_bytes) == b"raw \xff bytes"
    native = connected(s3, bucket=bucket)
    for task_id in (as_json, as_bytes):
        with pytest.raises(ForeignRecord, match="set `layout: selinon1` to read those"):
            native.retrieve(FLOW, TASK, task_id)


@pytest.mark.selinon1
def test_selinon1_layout_writes_what_selinon_1_4_reads(s3: Endpoint, bucket: str) -> None:
    as_json, as_bytes = tid(), tid()
    connected(s3, bucket=bucket, layout="selinon1", serialize_json=True).store(None, FLOW, TASK, as_json, RESULT)
    connected(s3, bucket=bucket, layout="selinon1").store(None, FLOW, TASK, as_bytes, b"raw \xff bytes")
    assert selinon1(s3, bucket, "retrieve", as_json) == RESULT
    assert selinon1(s3, bucket, "retrieve", as_bytes, json=False) == {"__bytes__": "raw \xff bytes"}


def test_selinon1_layout_writes_selinon_1_objects(s3: Endpoint, bucket: str) -> None:
    adapter = connected(s3, bucket=bucket, layout="selinon1", serialize_json=True)
    task_id = tid()
    assert adapter.store(None, FLOW, TASK, task_id, RESULT) == task_id
    assert json.loads(s3.client().get_object(Bucket=bucket, Key=task_id)["Body"].read()) == RESULT
    with pytest.raises(NotImplementedError, match="errors are not stored, as in Selinon 1.x"):
        adapter.store_error(None, FLOW, TASK, task_id, (RuntimeError, RuntimeError("x"), None))
    raw = connected(s3, bucket=bucket, layout="selinon1")
    assert raw.serialize_json is False  # Selinon 1.x's default
    with pytest.raises(TypeError, match="only bytes results"):
        raw.store(None, FLOW, TASK, task_id, "text")
    # this adapter's own records are read in the 1.x layout too
    connected(s3, bucket=bucket).store(None, FLOW, TASK, "shared-id", {"native": True})
    assert raw.retrieve(FLOW, TASK, "shared-id") == {"native": True}


def test_selinon1_layout_keeps_objects_at_the_bare_task_id(s3: Endpoint) -> None:
    with pytest.raises(ValueError, match="at the bare task id: remove `prefix`"):
        s3.storage(bucket="some-bucket", layout="selinon1", prefix="results/")
    with pytest.raises(ValueError, match="`layout` must be 'native'"):
        s3.storage(bucket="some-bucket", layout="selinon2")


@pytest.mark.parametrize(
    ("body", "options", "message"),
    [
        (b'{"result": "Hello, x!"}', {}, "no 'selinon_record' marker.*set `layout: selinon1`"),
        (b'{"x": 14}', {}, "no 'selinon_record' marker"),
        (b"Hello, x!", {}, "its content is not JSON.*set `layout: selinon1`"),
        (b"\xff\xfe", {}, "its content is not JSON"),
        (b'"Hello, x!"', {}, "no 'selinon_record' marker"),
        (b'{"selinon_record": 2, "result": 1}', {}, "format 2, which this adapter does not read"),
        (b'{"selinon_record": 2, "result": 1}', {"layout": "selinon1"}, "format 2"),
        (b"Hello, x!", {"layout": "selinon1", "serialize_json": True}, "is not JSON, as an object Selinon 1.x"),
    ],
)
def test_foreign_or_malformed_objects_raise(
    s3: Endpoint, bucket: str, body: bytes, options: dict[str, Any], message: str
) -> None:
    task_id = tid()
    s3.client().put_object(Bucket=bucket, Key=task_id, Body=body)
    adapter = connected(s3, bucket=bucket, **options)
    with pytest.raises(ForeignRecord, match=message):
        adapter.retrieve(FLOW, TASK, task_id)
    with pytest.raises(ForeignRecord):
        adapter.retrieve_error(FLOW, TASK, task_id)


def test_records_written_before_the_marker_are_read(s3: Endpoint, bucket: str) -> None:
    task_id = tid()
    old = {"flow_name": FLOW, "task_name": TASK, "node_args": None, "result_base64": "AAE="}
    s3.client().put_object(Bucket=bucket, Key=task_id, Body=json.dumps(old).encode())
    assert connected(s3, bucket=bucket).retrieve(FLOW, TASK, task_id) == b"\x00\x01"


def test_subclass_written_for_selinon_1(s3: Endpoint, bucket: str) -> None:
    """A project's own storage as written for Selinon 1.x (demo-worker's Travis logs): objects under keys of its
    own, through ``self._s3`` and ``self._bucket_name``."""
    from selinon.storages.s3 import S3

    class BuildLogs(S3):  # type: ignore[misc, valid-type]
        def store(self, node_args: Any, flow_name: str, task_name: str, task_id: str, result: Any) -> str:
            key = "travis/logs/{organization}/{repo}/{build}.json".format(**node_args)
            self._s3.Object(self._bucket_name, key).put(Body=json.dumps(result).encode())
            return key

        def retrieve_log(self, key: str) -> Any:
            return json.loads(self._s3.Object(self._bucket_name, key).get()["Body"].read().decode())

    adapter = BuildLogs(bucket, **{k: v for k, v in s3.options().items()})
    assert adapter._s3 is None
    adapter.connect()
    node_args = {"organization": "selinon", "repo": "demo", "build": str(uuid.uuid4())}
    key = adapter.store(node_args, FLOW, TASK, tid(), {"log": "passed ✓"})
    assert key == f"travis/logs/selinon/demo/{node_args['build']}.json"
    assert adapter.retrieve_log(key) == {"log": "passed ✓"}
    assert adapter._s3 is adapter._s3  # one resource per connection
    adapter.disconnect()
    assert adapter._s3 is None
