"""The adapter's own behaviour: options, bucket creation, record layout, keys, bytes, timeouts and secrets."""

from __future__ import annotations

import json
import logging
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Busy, Endpoint
from selinon_storage_s3 import S3, S3Storage, S3Unavailable, object_key
from selinon_storage_s3.storage import EXPECT_CONTINUE_FROM

from selinon import SelinonMissingDataException, StorageError
from selinon.jsonpolicy import NotJSONError
from selinon.testing import free_port

FLOW, TASK = "flowS3", "taskS3"


def tid() -> str:
    return f"s3-{uuid.uuid4()}"


def capture() -> Any:
    try:
        raise RuntimeError("task broke")
    except RuntimeError:
        return sys.exc_info()


@pytest.fixture
def storage(s3: Endpoint, bucket: str) -> Iterator[S3Storage]:
    adapter = s3.storage(bucket=bucket, prefix="results/")
    adapter.connect()
    yield adapter
    adapter.disconnect()


# -- options -----------------------------------------------------------------------------------------------------


def test_defaults_and_no_io() -> None:
    adapter = S3Storage(bucket="my-bucket-name", endpoint_url=f"http://127.0.0.1:{free_port()}")
    assert not adapter.is_connected()
    assert (adapter.prefix, adapter.serialize_json, adapter.create_bucket) == ("", True, True)
    assert (adapter.connect_timeout, adapter.read_timeout, adapter.max_pool_connections) == (5, 60, 10)
    assert adapter.addressing_style == "path"  # an endpoint_url: an S3-compatible server
    assert S3Storage(bucket="my-bucket-name").addressing_style == "auto"
    assert S3 is S3Storage


@pytest.mark.parametrize(
    "name",
    ["my_bucket", "MyBucket", "ab", "a" * 64, "-bucket", "bucket-", "bucket.", "a..b", "192.168.1.10", "xn--bucket",
     "sthree-bucket", "bucket-s3alias", "bucket--ol-s3", "bucket with space", ""],
)  # fmt: skip
def test_invalid_bucket_names(name: str) -> None:
    with pytest.raises(ValueError, match="not a valid S3 bucket name"):
        S3Storage(bucket=name)


@pytest.mark.parametrize("name", ["abc", "my-bucket-name", "logs.example.com", "a" * 63, "0-results-1"])
def test_valid_bucket_names(name: str) -> None:
    assert S3Storage(bucket=name).bucket == name


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"bucket": 42}, "`bucket` must be a string"),
        ({"aws_access_key_id": "AKIA"}, "give both"),
        ({"aws_secret_access_key": "s3cr3t"}, "give both"),
        ({"aws_session_token": "tok"}, "aws_session_token"),
        ({"connect_timeout": 0}, "connect_timeout"),
        ({"connect_timeout": -1}, "connect_timeout"),
        ({"connect_timeout": "soon"}, "connect_timeout"),
        ({"connect_timeout": True}, "connect_timeout"),
        ({"read_timeout": 0}, "read_timeout"),
        ({"max_pool_connections": 0}, "max_pool_connections"),
        ({"max_pool_connections": 2.5}, "whole number"),
        ({"endpoint_url": "localhost:9000"}, "endpoint_url"),
        ({"endpoint_url": "ftp://host"}, "endpoint_url"),
        ({"addressing_style": "dns"}, "addressing_style"),
        ({"prefix": "p" * 600}, "prefix"),
        ({"prefix": 7}, "prefix"),
        ({"serialize_json": "maybe"}, "serialize_json"),
        ({"create_bucket": "perhaps"}, "create_bucket"),
        ({"use_ssl": "sometimes"}, "use_ssl"),
        ({"region_name": 3}, "region_name"),
    ],
)
def test_invalid_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message) as raised:
        S3Storage(**{"bucket": "my-bucket-name", **options})
    assert "s3cr3t" not in str(raised.value)


def test_options_from_environment_references_are_strings() -> None:
    """`{NAME}` references expand to strings: numbers and flags are read from them."""
    adapter = S3Storage(
        bucket="my-bucket-name", connect_timeout="2.5", max_pool_connections="4", serialize_json="false",
        create_bucket="no", use_ssl="true",
    )  # fmt: skip
    assert (adapter.connect_timeout, adapter.max_pool_connections) == (2.5, 4)
    assert (adapter.serialize_json, adapter.create_bucket, adapter.use_ssl) == (False, False, True)


def test_client_options(s3: Endpoint, bucket: str) -> None:
    adapter = s3.storage(bucket=bucket, connect_timeout=3, read_timeout=7, max_pool_connections=3)
    adapter.connect()
    try:
        config = adapter._client.meta.config  # type: ignore[union-attr]
        assert (config.connect_timeout, config.read_timeout, config.max_pool_connections) == (3, 7, 3)
        assert config.s3["addressing_style"] == "path"
        assert config.retries["total_max_attempts"] == 1  # the pool retries, not botocore
    finally:
        adapter.disconnect()


def test_use_ssl_and_addressing_style_without_endpoint() -> None:
    """Without endpoint_url the client talks to AWS: use_ssl picks the scheme (no request is made here)."""
    plain = S3Storage(bucket="my-bucket-name", region_name="eu-west-1", use_ssl=False, addressing_style="virtual")
    client = plain._new_client()
    assert client.meta.endpoint_url.startswith("http://")
    assert client.meta.config.s3["addressing_style"] == "virtual"
    assert (
        S3Storage(bucket="my-bucket-name", region_name="eu-west-1")
        ._new_client()
        .meta.endpoint_url.startswith("https://")
    )


def test_credentials_from_boto3_chain(s3: Endpoint, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """No credentials nor region in the configuration: boto3 finds them in the environment."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    adapter = S3Storage(bucket=bucket, endpoint_url=s3.url)
    adapter.connect()
    try:
        adapter.store(None, FLOW, TASK, "chain", {"ok": True})
        assert adapter.retrieve(FLOW, TASK, "chain") == {"ok": True}
        location = s3.client("eu-west-1").get_bucket_location(Bucket=bucket)["LocationConstraint"]
        assert location == "eu-west-1"  # `location` defaults to the region boto3 found
    finally:
        adapter.disconnect()


# -- buckets -----------------------------------------------------------------------------------------------------


def test_bucket_created_in_us_east_1(s3: Endpoint) -> None:
    """us-east-1 refuses a LocationConstraint naming itself: none is sent there."""
    bucket = s3.new_bucket("us-east-1")
    for location in (None, "us-east-1"):
        adapter = s3.storage(bucket=bucket, region_name="us-east-1", location=location)
        adapter.connect()
        adapter.store(None, FLOW, TASK, "t", 1)
        adapter.disconnect()
    assert s3.client("us-east-1").get_bucket_location(Bucket=bucket)["LocationConstraint"] in (None, "", "us-east-1")


def test_bucket_created_in_another_region(s3: Endpoint) -> None:
    bucket = s3.new_bucket("eu-west-1")
    adapter = s3.storage(bucket=bucket, region_name="eu-west-1")
    adapter.connect()
    try:
        assert s3.client("eu-west-1").get_bucket_location(Bucket=bucket)["LocationConstraint"] == "eu-west-1"
        adapter.store(None, FLOW, TASK, "t", [1])
        assert adapter.retrieve(FLOW, TASK, "t") == [1]
    finally:
        adapter.disconnect()


def test_location_option_is_the_location_constraint(s3: Endpoint) -> None:
    if s3.external:
        pytest.skip("whether a region's endpoint creates buckets in another region depends on the server")
    bucket = s3.new_bucket("eu-central-1")
    adapter = s3.storage(bucket=bucket, region_name="us-east-1", location="eu-central-1")
    adapter.connect()
    adapter.disconnect()
    assert s3.client("eu-central-1").get_bucket_location(Bucket=bucket)["LocationConstraint"] == "eu-central-1"


def test_existing_bucket_is_used(s3: Endpoint, bucket: str) -> None:
    s3.client().create_bucket(Bucket=bucket)
    s3.client().put_object(Bucket=bucket, Key="unrelated", Body=b"kept")
    adapter = s3.storage(bucket=bucket, create_bucket=False)
    adapter.connect()
    adapter.store(None, FLOW, TASK, "t", "v")
    adapter.disconnect()
    assert sorted(s3.keys(bucket)) == ["t", "unrelated"]


def test_missing_bucket_without_create_bucket(s3: Endpoint, bucket: str) -> None:
    adapter = s3.storage(bucket=bucket, create_bucket=False)
    with pytest.raises(StorageError, match=f"{bucket}.*does not exist.*create_bucket"):
        adapter.connect()
    assert not adapter.is_connected()
    assert bucket not in [b["Name"] for b in s3.client().list_buckets()["Buckets"]]


def test_bucket_deleted_after_connect(s3: Endpoint, storage: S3Storage) -> None:
    client = s3.client()
    for key in s3.keys(storage.bucket):
        client.delete_object(Bucket=storage.bucket, Key=key)
    client.delete_bucket(Bucket=storage.bucket)
    with pytest.raises(StorageError, match="no longer exists"):
        storage.retrieve(FLOW, TASK, tid())


# -- records -----------------------------------------------------------------------------------------------------


def test_record_layout(s3: Endpoint, storage: S3Storage) -> None:
    task_id = tid()
    record_id = storage.store({"url": "https://example.com"}, FLOW, TASK, task_id, {"answer": 42})
    assert record_id == f"results/{task_id}"
    obj = s3.client().get_object(Bucket=storage.bucket, Key=record_id)
    assert obj["ContentType"].startswith("application/json")
    assert json.loads(obj["Body"].read()) == {
        "selinon_record": 1,
        "flow_name": FLOW,
        "task_name": TASK,
        "node_args": {"url": "https://example.com"},
        "result": {"answer": 42},
    }


def test_one_object_per_task_id(s3: Endpoint, storage: S3Storage) -> None:
    """store and store_error replace each other: one PUT, one object, whatever happened before."""
    task_id = tid()
    storage.store(None, FLOW, TASK, task_id, 1)
    storage.store(None, FLOW, TASK, task_id, 2)
    storage.store_error({"a": 1}, FLOW, TASK, task_id, capture())
    assert s3.keys(storage.bucket, "results/") == [f"results/{task_id}"]
    record = json.loads(s3.client().get_object(Bucket=storage.bucket, Key=f"results/{task_id}")["Body"].read())
    assert "result" not in record and record["error"]["message"] == "task broke"
    assert storage.store(None, FLOW, TASK, task_id, 3) == f"results/{task_id}"
    assert s3.keys(storage.bucket, "results/") == [f"results/{task_id}"]
    assert storage.retrieve(FLOW, TASK, task_id) == 3
    with pytest.raises(SelinonMissingDataException):
        storage.retrieve_error(FLOW, TASK, task_id)


def test_records_up_to_1_mib_go_in_one_piece(storage: S3Storage) -> None:
    """A PUT asks the server to go ahead (`Expect: 100-continue`, a round trip) only for a record over 1 MiB."""
    sent: list[tuple[int, str | None]] = []

    def watch(request: Any, **_: Any) -> None:
        expect = request.headers.get("Expect")  # bytes once the request is prepared
        sent.append((len(request.body.getvalue()), expect.decode() if expect else None))

    storage._client.meta.events.register("before-send.s3.PutObject", watch)
    small, large = tid(), tid()
    storage.store(None, FLOW, TASK, small, {"text": "x" * 1000})
    storage.store(None, FLOW, TASK, large, {"text": "x" * EXPECT_CONTINUE_FROM})
    assert [expect for _, expect in sent] == [None, "100-continue"]
    assert sent[0][0] < 2000 and sent[1][0] > EXPECT_CONTINUE_FROM
    assert storage.retrieve(FLOW, TASK, small) == {"text": "x" * 1000}
    assert storage.retrieve(FLOW, TASK, large) == {"text": "x" * EXPECT_CONTINUE_FROM}


def test_prefix_isolation(s3: Endpoint, bucket: str) -> None:
    first, second, bare = (s3.storage(bucket=bucket, prefix=p) for p in ("first/", "second/", ""))
    for adapter in (first, second, bare):
        adapter.connect()
    try:
        first.store(None, FLOW, TASK, "same-id", "first")
        second.store(None, FLOW, TASK, "same-id", "second")
        assert first.retrieve(FLOW, TASK, "same-id") == "first"
        assert second.retrieve(FLOW, TASK, "same-id") == "second"
        with pytest.raises(SelinonMissingDataException):
            bare.retrieve(FLOW, TASK, "same-id")
        first.delete(FLOW, TASK, "same-id")
        assert second.retrieve(FLOW, TASK, "same-id") == "second"
        assert s3.keys(bucket) == ["second/same-id"]
    finally:
        for adapter in (first, second, bare):
            adapter.disconnect()


HOSTILE = [
    "../../outside", "..", ".", "/", "//", "/absolute", "a/../../b", "%", "%2F", "%2E%2E", "..%2F", "~", "a~b",
    "\\..\\x", "line\nbreak", "\x00", "nul\x00tail", "", " ", "?x=1&y", "#frag", "*", "é" * 400, "x" * 5000, "🐍" * 300,
]  # fmt: skip


def test_hostile_ids_stay_under_the_prefix(s3: Endpoint, storage: S3Storage) -> None:
    for n, task_id in enumerate(HOSTILE):
        assert storage.store(None, FLOW, TASK, task_id, n).startswith("results/")
    keys = s3.keys(storage.bucket)
    assert len(keys) == len(HOSTILE)  # each id its own object, nothing outside the prefix
    for key in keys:
        assert key.startswith("results/")
        name = key.removeprefix("results/")
        assert name and "/" not in name and name not in (".", "..") and len(key.encode()) <= 1024
    for n, task_id in enumerate(HOSTILE):
        assert storage.retrieve(FLOW, TASK, task_id) == n
    for task_id in HOSTILE:
        storage.delete(FLOW, TASK, task_id)
    assert s3.keys(storage.bucket) == []


def test_object_key_encoding() -> None:
    assert object_key("p/", "plain-id_1") == "p/plain-id_1"
    assert object_key("p/", "../x") == "p/%2E%2E%2Fx"
    assert object_key("", "a.b") != object_key("", "a%2Eb")
    long = object_key("p/", "é" * 1000)
    assert len(long) < 200 and "~" in long
    assert object_key("p/", "é" * 1000) != object_key("p/", "é" * 999 + "e")
    assert object_key("p/", "").startswith("p/~")
    with pytest.raises(TypeError):
        object_key("p/", 42)  # type: ignore[arg-type]


def test_not_a_record(s3: Endpoint, storage: S3Storage) -> None:
    s3.client().put_object(Bucket=storage.bucket, Key="results/foreign", Body=b"[1, 2]")
    with pytest.raises(StorageError, match="not a Selinon record"):
        storage.retrieve(FLOW, TASK, "foreign")


def test_calls_before_connect() -> None:
    with pytest.raises(StorageError, match="not connected"):
        S3Storage(bucket="my-bucket-name").retrieve(FLOW, TASK, "x")


# -- bytes and serialize_json ------------------------------------------------------------------------------------


def test_bytes_results_round_trip(storage: S3Storage) -> None:
    blob = bytes(range(256)) * 4096
    for value in (blob, b""):
        task_id = tid()
        storage.store(None, FLOW, TASK, task_id, value)
        back = storage.retrieve(FLOW, TASK, task_id)
        assert type(back) is bytes and back == value
    for other in (bytearray(b"\x00\xff"), memoryview(b"view")):  # they would read back as bytes: refused
        with pytest.raises(NotJSONError, match=r"would read back as bytes; store bytes\(result\) instead"):
            storage.store(None, FLOW, TASK, "other", other)
    with pytest.raises(SelinonMissingDataException):
        storage.retrieve(FLOW, TASK, "other")
    storage.store(None, FLOW, TASK, "text", "not bytes")
    assert storage.retrieve(FLOW, TASK, "text") == "not bytes"


def test_serialize_json_false_takes_only_bytes(s3: Endpoint, bucket: str) -> None:
    adapter = s3.storage(bucket=bucket, serialize_json=False)
    adapter.connect()
    try:
        adapter.store({"n": 1}, FLOW, TASK, "blob", b"\x89PNG")
        assert adapter.retrieve(FLOW, TASK, "blob") == b"\x89PNG"
        for value in ({"a": 1}, "text", 42, None):
            with pytest.raises(TypeError, match="serialize_json"):
                adapter.store(None, FLOW, TASK, "refused", value)
        assert s3.keys(bucket) == ["blob"]  # nothing written for the refused results
        adapter.store_error(None, FLOW, TASK, "failed", capture())  # errors are kept whatever the setting
        assert adapter.retrieve_error(FLOW, TASK, "failed")["message"] == "task broke"
    finally:
        adapter.disconnect()


# -- failures, timeouts and secrets ------------------------------------------------------------------------------

SECRET = f"planted-secret-{uuid.uuid4().hex}"
TOKEN = f"planted-token-{uuid.uuid4().hex}"


def _no_secret(exc: BaseException) -> None:
    seen: BaseException | None = exc
    while seen is not None:
        for text in (str(seen), repr(seen)):
            assert SECRET not in text and TOKEN not in text
        seen = seen.__cause__ or seen.__context__


def test_closed_port_fails_fast_without_the_secret(bucket: str) -> None:
    port = free_port()
    adapter = S3Storage(
        bucket=bucket, endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
        aws_secret_access_key=SECRET, aws_session_token=TOKEN, connect_timeout=2,
    )  # fmt: skip
    started = time.monotonic()
    with pytest.raises(StorageError) as raised:
        adapter.connect()
    assert time.monotonic() - started < 4
    assert f"127.0.0.1:{port}" in str(raised.value) and bucket in str(raised.value)
    _no_secret(raised.value)
    assert not adapter.is_connected()
    assert SECRET not in repr(adapter) and TOKEN not in repr(adapter) and SECRET not in str(adapter)


def test_silent_server_fails_within_connect_timeout(bucket: str) -> None:
    """A server that accepts connections and never answers: connect() gives up after connect_timeout."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        adapter = S3Storage(
            bucket=bucket, endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
            aws_secret_access_key=SECRET, connect_timeout=1, read_timeout=60,
        )  # fmt: skip
        started = time.monotonic()
        with pytest.raises(StorageError, match="connect_timeout"):
            adapter.connect()
        assert time.monotonic() - started < 3
        assert not adapter.is_connected()


def test_no_secret_in_log_records(s3: Endpoint, bucket: str, caplog: pytest.LogCaptureFixture) -> None:
    """botocore logs signed requests at DEBUG level: the session token must not be in them."""
    caplog.set_level(logging.DEBUG)
    adapter = s3.storage(bucket=bucket, aws_secret_access_key=SECRET, aws_session_token=TOKEN)
    adapter.connect()
    adapter.store({"n": 1}, FLOW, TASK, "logged", {"x": 1})
    adapter.retrieve(FLOW, TASK, "logged")
    adapter.store_error(None, FLOW, TASK, "logged", capture())
    adapter.delete(FLOW, TASK, "logged")
    adapter.disconnect()
    with pytest.raises(StorageError):
        S3Storage(
            bucket=bucket, endpoint_url=f"http://127.0.0.1:{free_port()}", aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
            aws_secret_access_key=SECRET, aws_session_token=TOKEN,
        ).connect()  # fmt: skip
    messages = [record.getMessage() for record in caplog.records]
    assert any("x-amz-security-token" in m.lower() for m in messages)  # the header was logged, masked
    assert not [m for m in messages if SECRET in m or TOKEN in m]


def test_credentials_in_endpoint_url_are_refused_and_hidden(bucket: str) -> None:
    with pytest.raises(ValueError, match="`endpoint_url` holds a user name or password") as raised:
        S3Storage(bucket=bucket, endpoint_url=f"http://user:{SECRET}@127.0.0.1:{free_port()}", connect_timeout=1)
    _no_secret(raised.value)


def test_overloaded_server_is_transient(busy_endpoint: str) -> None:
    adapter = S3Storage(
        bucket="busy-bucket", endpoint_url=busy_endpoint, aws_access_key_id="AKIA", aws_secret_access_key=SECRET
    )
    adapter.connect()
    with pytest.raises(S3Unavailable, match="SlowDown") as raised:
        adapter.store(None, FLOW, TASK, "t", {"x": 1})
    assert isinstance(raised.value, S3Storage.transient_errors)
    assert Busy.puts == 1  # botocore did not retry: the pool's retry policy is the one that does
    _no_secret(raised.value)
    adapter.disconnect()
