"""Reliability of the S3 adapter through StoragePool, against a real S3 HTTP server (moto's, or the endpoint that
SELINON_TEST_S3_ENDPOINT names).

- Connection loss while 8 threads store and read back: every connection cut through a TcpProxy in front of the
  server (three times), then the server unreachable (connections reset, new ones refused) until the pool has
  retried 8 calls. moto keeps its data in memory only, so it is never restarted: the proxy plays the outage.
  Every call succeeds after the pool's bounded retry or raises a StorageError naming the storage; counted
  through boto3 afterwards, every record a call reported stored is there once (one object per task id, no
  other object in the bucket), with its content.
- A server that is down at connect(): a StorageError naming the storage and the endpoint, without the secret
  key, within connect_timeout (plus slack for a loaded machine).
- Load: 10,000 records from 8 threads, all there once and correct.
- Permanent errors are not retried: a bucket deleted under a connected adapter, a result JSON cannot hold.
- Too large: S3 takes at most 5 GiB in one PUT. A 5 GiB result is impractical on this machine, so the test
  lowers the adapter's own limit (``selinon_storage_s3.storage.MAX_OBJECT_SIZE``, checked before any request)
  and proves that a record over it fails before anything is written, leaving the previous record unchanged.
- Processes are covered by test_selinon.py::test_fork_safety (children store through the pool, through a proxy
  that counts their connections, with connection pools of their own).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import selinon_storage_s3.storage as storage_module
from conftest import Endpoint
from selinon_storage_s3 import object_key

from selinon import StorageError, StoragePool
from selinon.testing import TcpProxy, free_port, planted_secret
from selinon.testing.load import FLOW, TASK, Outcome, StorageEvents, hammer, result_for, storage_events

STORAGE = "ReliableS3"
#: Short but realistic: a lost connection is retried for up to 20 s.
RETRY = {"attempts": 8, "deadline": 20, "backoff": 0.05, "max_backoff": 1.0}
THREADS = 8


events = pytest.fixture(storage_events, name="events")


@pytest.fixture
def quiet_driver(caplog: pytest.LogCaptureFixture) -> None:
    """botocore logs every request at DEBUG level: thousands of calls would fill the test report."""
    for name in ("botocore", "boto3", "urllib3"):
        caplog.set_level(logging.INFO, logger=name)


def configure(tmp_path: Path, configuration: dict[str, Any]) -> None:
    entry = {"name": STORAGE, "classname": "S3Storage", "configuration": configuration, "retry": RETRY}
    path = tmp_path / f"nodes-{uuid.uuid4().hex[:8]}.yaml"
    path.write_text(json.dumps({"storages": [entry], "tasks": [{"name": TASK, "storage": STORAGE}]}))  # JSON is YAML
    StoragePool.configure(path)


def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> bool:
    """Poll a condition (bounded); True once it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def check_errors(outcome: Outcome) -> None:
    """A call may fail only as a StorageError naming the storage, raised after the pool retried it."""
    for error in outcome.errors:
        assert isinstance(error, StorageError), repr(error)
        assert f"storage {STORAGE!r} (S3Storage)" in str(error), str(error)
        assert " attempts in " in str(error), f"failed without being retried: {error}"


def check_through_driver(s3: Endpoint, bucket: str, outcome: Outcome, records: int, content: bool = True) -> None:
    """Counted with boto3: one object per task id and no other, every record reported stored there (and, with
    ``content``, read back with boto3 and compared whole)."""
    keys = s3.keys(bucket)
    assert len(keys) == len(set(keys)) <= records
    expected = {object_key("", task_id): task_id for task_id in outcome.stored}
    missing = [task_id for key, task_id in expected.items() if key not in set(keys)]
    assert not missing, f"{len(missing)} of {len(expected)} records reported stored are missing: {missing[:5]}"
    assert not [key for key in keys if not key.startswith(("cut-", "load-"))], "objects of no task"
    if not content:
        return
    client = s3.client()

    def wrong(key: str) -> bool:
        record = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
        task_id = expected[key]
        return bool(record != {"selinon_record": 1, "flow_name": FLOW, "task_name": TASK, "node_args": {"n": int(task_id.rsplit("-")[-1])},
                               "result": result_for(task_id)})  # fmt: skip

    with ThreadPoolExecutor(THREADS) as executor:
        bad = [key for key, is_wrong in zip(expected, executor.map(wrong, expected), strict=True) if is_wrong]
    assert not bad, f"{len(bad)} records have the wrong content: {bad[:5]}"


def report(what: str, outcome: Outcome, events: StorageEvents, **extra: Any) -> None:
    print(
        f"{what}: {len(outcome.stored)} stored and read back, {len(outcome.errors)} errors, "
        f"{events['retry']} retries, {outcome.seconds:.1f}s",
        *(f"{k}={v}" for k, v in extra.items()),
    )


# -- connection loss -------------------------------------------------------------------------------------------


@pytest.fixture
def proxy(s3: Endpoint) -> Iterator[TcpProxy]:
    parts = urlsplit(s3.url)
    if parts.scheme != "http":
        pytest.skip("the proxy forwards plain HTTP only (TLS would not verify the proxy's address)")
    with TcpProxy(parts.hostname or "127.0.0.1", parts.port or 80) as tcp_proxy:
        yield tcp_proxy


def test_connections_cut_while_threads_store(
    tmp_path: Path, s3: Endpoint, bucket: str, proxy: TcpProxy, events: StorageEvents, quiet_driver: None
) -> None:
    """While 8 threads store and read back through the pool, every open connection is reset three times, and
    then the server is unreachable (connections reset, new ones refused) until the pool has retried 8 calls.

    botocore makes one attempt per call here, so every call a reset hits is carried by the pool's retry policy.
    """
    records = 2000
    configure(tmp_path, s3.options(bucket=bucket, endpoint_url=f"http://127.0.0.1:{proxy.port}", read_timeout=10))
    cuts: list[int] = []
    drill_over = lambda: events["store"] >= records  # noqa: E731

    def faults() -> None:
        for _ in range(3):
            stored, opened = events["store"], proxy.connections
            cuts.append(proxy.cut())
            # the next cut once the clients have reconnected and stored more
            wait_until(
                lambda opened=opened, stored=stored: (
                    (proxy.connections > opened and events["store"] >= stored + 100) or drill_over()
                )
            )
        proxy.refuse()
        cuts.append(proxy.cut())
        retried = events["retry"]
        try:
            assert wait_until(lambda: events["retry"] >= retried + THREADS or drill_over())
        finally:
            proxy.accept()

    outcome = hammer("cut", records, THREADS, during=faults)
    report("cut", outcome, events, cuts=cuts)
    check_errors(outcome)
    assert len(outcome.stored) + len(outcome.errors) == records
    assert len(cuts) == 4 and sum(cuts) > 0, f"the proxy had no connection to cut: {cuts}"
    assert events["retry"] >= THREADS, "the outage did not make the pool retry"
    check_through_driver(s3, bucket, outcome, records)
    outcome.check_all_present()


# -- a server down at connect() ---------------------------------------------------------------------------------


@pytest.mark.parametrize("down", ["refusing proxy", "closed port"])
def test_server_down_at_connect(tmp_path: Path, s3: Endpoint, bucket: str, down: str) -> None:
    """A clear StorageError naming the storage and the endpoint, without the secret, within connect_timeout."""
    secret, connect_timeout = planted_secret(), 2
    with TcpProxy("127.0.0.1", free_port()) as tcp_proxy:
        tcp_proxy.refuse()
        port = tcp_proxy.port if down == "refusing proxy" else free_port()
        configure(
            tmp_path,
            {"bucket": bucket, "endpoint_url": f"http://127.0.0.1:{port}", "aws_access_key_id": "AKIAIOSFODNN7EXAMPLE",
             "aws_secret_access_key": secret, "connect_timeout": connect_timeout},
        )  # fmt: skip
        started = time.monotonic()
        with pytest.raises(StorageError) as raised:
            StoragePool.get_connected_storage(STORAGE)
        elapsed = time.monotonic() - started
    message = str(raised.value)
    assert message.startswith(f"storage {STORAGE!r} (S3Storage): connect failed: "), message
    assert f"cannot connect to S3 at http://127.0.0.1:{port} (bucket {bucket!r})" in message
    assert secret not in message and secret not in repr(raised.value)
    assert elapsed < connect_timeout + 5, f"took {elapsed:.1f}s with connect_timeout {connect_timeout}s"
    assert not StoragePool.get_storage(STORAGE).is_connected()


# -- load ------------------------------------------------------------------------------------------------------


def test_ten_thousand_records_from_eight_threads(
    tmp_path: Path, s3: Endpoint, bucket: str, events: StorageEvents, quiet_driver: None
) -> None:
    """10,000 records stored and read back from 8 threads through the pool: every one there once, and correct."""
    records = 10_000
    configure(tmp_path, s3.options(bucket=bucket))
    outcome = hammer("load", records, THREADS)  # reads every record back through the pool, compared whole
    report("load", outcome, events)
    assert outcome.errors == []
    assert len(outcome.stored) == records
    assert len(s3.keys(bucket)) == records
    # 10,000 more GETs would double the test's time: boto3 counts the objects, and reads a sample back
    check_through_driver(s3, bucket, outcome, records, content=False)
    sample = Outcome(stored=outcome.stored[::50])
    check_through_driver(s3, bucket, sample, records)


# -- permanent errors and results that cannot be stored ----------------------------------------------------------


def test_a_missing_bucket_is_not_retried(tmp_path: Path, s3: Endpoint, bucket: str, events: StorageEvents) -> None:
    configure(tmp_path, s3.options(bucket=bucket))
    StoragePool.set(None, FLOW, TASK, "before", 1)
    client = s3.client()
    client.delete_object(Bucket=bucket, Key="before")
    client.delete_bucket(Bucket=bucket)
    started = time.monotonic()
    with pytest.raises(StorageError, match=f"storage {STORAGE!r} \\(S3Storage\\): store failed: bucket") as raised:
        StoragePool.set(None, FLOW, TASK, "after", 2)
    assert "no longer exists" in str(raised.value) and " attempts in " not in str(raised.value)
    assert events["retry"] == 0 and time.monotonic() - started < 10


@pytest.mark.parametrize("result", [{"a set"}, float("nan"), object()], ids=["set", "NaN", "object"])
def test_a_result_json_cannot_hold_is_refused_before_writing(
    tmp_path: Path, s3: Endpoint, bucket: str, events: StorageEvents, result: Any
) -> None:
    configure(tmp_path, s3.options(bucket=bucket))
    StoragePool.set({"n": 1}, FLOW, TASK, "task", "the previous result")
    before = s3.client().get_object(Bucket=bucket, Key="task")["Body"].read()
    with pytest.raises(StorageError, match=f"storage {STORAGE!r} \\(S3Storage\\): store failed: "):
        StoragePool.set({"n": 2}, FLOW, TASK, "task", result)
    assert events["retry"] == 0
    assert s3.client().get_object(Bucket=bucket, Key="task")["Body"].read() == before
    assert StoragePool.retrieve(FLOW, TASK, "task") == "the previous result"


def test_a_record_over_the_size_limit_is_refused_before_writing(
    tmp_path: Path, s3: Endpoint, bucket: str, events: StorageEvents, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S3's limit of one PUT (5 GiB) is the adapter's, checked before any request; lowered here to 64 KiB."""
    assert storage_module.MAX_OBJECT_SIZE == 5 * 1024**3
    monkeypatch.setattr(storage_module, "MAX_OBJECT_SIZE", 64 * 1024)
    configure(tmp_path, s3.options(bucket=bucket))
    StoragePool.set({"n": 1}, FLOW, TASK, "task", "the previous result")
    before = s3.client().get_object(Bucket=bucket, Key="task")["Body"].read()
    with pytest.raises(StorageError) as raised:
        StoragePool.set({"n": 2}, FLOW, TASK, "task", "x" * (64 * 1024))
    message = str(raised.value)
    assert message.startswith(f"storage {STORAGE!r} (S3Storage): store failed: "), message
    assert "too large for one S3 object" in message and "xxxxxxxx" not in message
    assert events["retry"] == 0
    assert s3.client().get_object(Bucket=bucket, Key="task")["Body"].read() == before
    StoragePool.set({"n": 3}, FLOW, TASK, "task", "x" * (60 * 1024))  # under the limit: stored
    assert StoragePool.retrieve(FLOW, TASK, "task") == "x" * (60 * 1024)
