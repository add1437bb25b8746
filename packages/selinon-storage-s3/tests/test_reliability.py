"""Reliability of the S3 adapter through StoragePool, against a real S3 HTTP server (moto's, or the endpoint that
SELINON_TEST_S3_ENDPOINT names).

- The test kit's fault drills: connections cut through a TcpProxy in front of the server while 8 threads store
  and read back (moto keeps its data in memory only, so it is never restarted: the proxy plays the outage), a
  server refusing or silent at connect(), forked workers, 10,000 records from 8 threads. (Refused credentials:
  moto accepts any; not drilled.)
- Permanent errors are not retried: a bucket deleted under a connected adapter.
- Too large: S3 takes at most 5 GiB in one PUT. A 5 GiB result is impractical on this machine, so the test
  lowers the adapter's own limit (``selinon_storage_s3.storage.MAX_OBJECT_SIZE``, checked before any request)
  and proves that a record over it fails before anything is written, leaving the previous record unchanged.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import selinon_storage_s3.storage as storage_module
from conftest import Endpoint, S3Backend

from selinon import StorageError, StoragePool
from selinon.testing import StorageDrills
from selinon.testing.load import FLOW, TASK, StorageEvents, storage_events

STORAGE = "ReliableS3"
#: Short but realistic: a lost connection is retried for up to 20 s.
RETRY = {"attempts": 8, "deadline": 20, "backoff": 0.05, "max_backoff": 1.0}


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


# -- the test kit's drills -------------------------------------------------------------------------------------


class TestS3Drills(StorageDrills):
    classname = "S3Storage"
    read_timeout = 10  # configuration() sets it

    @pytest.fixture(autouse=True)
    def endpoint(self, s3: Endpoint, quiet_driver: None) -> None:
        if urlsplit(s3.url).scheme != "http":
            pytest.skip("the proxy forwards plain HTTP only (TLS would not verify the proxy's address)")
        self.s3, self.bucket = s3, s3.new_bucket()

    @pytest.fixture
    def server_address(self) -> tuple[str, int]:
        parts = urlsplit(self.s3.url)
        return parts.hostname or "127.0.0.1", parts.port or 80

    @pytest.fixture
    def backend(self) -> S3Backend:
        return S3Backend(self.s3, self.bucket)

    def configuration(self, host: str, port: int, timeout: float) -> dict[str, Any]:
        return self.s3.options(
            bucket=self.bucket,
            endpoint_url=f"http://{host}:{port}",
            connect_timeout=timeout,
            read_timeout=self.read_timeout,
        )


# -- permanent errors and records too large ---------------------------------------------------------------------


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
