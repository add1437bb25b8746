"""The S3 endpoint the tests talk to: a moto server they start themselves, or the one SELINON_TEST_S3_ENDPOINT names.

SELINON_TEST_S3_ENDPOINT=https://minio.example:9000 (with SELINON_TEST_S3_ACCESS_KEY, SELINON_TEST_S3_SECRET_KEY and
SELINON_TEST_S3_REGION) runs the suite against a real S3-compatible server; the buckets it creates there are emptied
and removed at the end.
"""

from __future__ import annotations

import os
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import boto3
import pytest
from botocore.client import Config
from selinon_storage_s3 import S3Storage, object_key

from selinon import StoragePool, registry
from selinon.testing import Backend, ServerProcess, require_service
from selinon.testing.services import pytest_terminal_summary, python_module_argv  # noqa: F401 - the skip summary

ENDPOINT_ENV = "SELINON_TEST_S3_ENDPOINT"


@dataclass
class Endpoint:
    """An S3 endpoint, the credentials for it, and the buckets the tests made there."""

    url: str
    access_key: str
    secret_key: str
    region: str
    external: bool
    buckets: list[tuple[str, str]] = field(default_factory=list)

    def new_bucket(self, region: str | None = None) -> str:
        """A fresh, valid bucket name (not created): the adapter under test creates it."""
        name = f"selinon-test-{uuid.uuid4().hex}"
        self.buckets.append((name, region or self.region))
        return name

    def options(self, **extra: Any) -> dict[str, Any]:
        """Adapter options reaching this endpoint."""
        return {
            "endpoint_url": self.url,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "region_name": self.region,
            **extra,
        }

    def storage(self, **extra: Any) -> S3Storage:
        return S3Storage(**self.options(**extra))

    def client(self, region: str | None = None) -> Any:
        """A plain boto3 client, to look at what the adapter wrote."""
        session = boto3.session.Session(
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=region or self.region,
        )
        return session.client("s3", endpoint_url=self.url, config=Config(s3={"addressing_style": "path"}))

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def remove_buckets(self) -> None:
        for bucket, region in self.buckets:
            client = self.client(region)
            try:
                for key in self.keys(bucket):
                    client.delete_object(Bucket=bucket, Key=key)
                client.delete_bucket(Bucket=bucket)
            except Exception:  # never created, or already gone
                pass


class S3Backend(Backend):
    """A bucket (under a key prefix) seen through boto3: its objects by task id."""

    def __init__(self, endpoint: Endpoint, bucket: str, prefix: str = "") -> None:
        self.endpoint, self.bucket, self.prefix = endpoint, bucket, prefix
        parts = urlsplit(endpoint.url)
        self.address = (parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80))

    def records(self, prefix: str) -> Counter[str]:
        keys = self.endpoint.keys(self.bucket, object_key(self.prefix, prefix))
        return Counter(unquote(key[len(self.prefix) :]) for key in keys)


def _moto_argv() -> list[str]:
    script = Path(sys.executable).parent / "moto_server"
    argv = [str(script)] if script.exists() else python_module_argv("moto.server")
    return [*argv, "-H", "127.0.0.1", "-p", "{port}"]


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    url = os.environ.get(ENDPOINT_ENV)
    if url:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        require_service("the S3 endpoint", parts.hostname or "127.0.0.1", port, f"check {ENDPOINT_ENV}={url}")
        endpoint = Endpoint(
            url=url,
            access_key=os.environ.get("SELINON_TEST_S3_ACCESS_KEY", ""),
            secret_key=os.environ.get("SELINON_TEST_S3_SECRET_KEY", ""),
            region=os.environ.get("SELINON_TEST_S3_REGION", "us-east-1"),
            external=True,
        )
        yield endpoint
        endpoint.remove_buckets()
        return
    log = tmp_path_factory.mktemp("moto") / "moto_server.log"
    what = "moto's S3 server (install it: pip install 'moto[server]')"
    with ServerProcess(_moto_argv(), what, log=log) as server:
        # moto does not check credentials; these fake ones only have to be well-formed.
        yield Endpoint(f"http://127.0.0.1:{server.port}", "AKIAIOSFODNN7EXAMPLE", "fake-secret", "us-east-1", False)


@pytest.fixture
def bucket(s3: Endpoint) -> str:
    return s3.new_bucket()


@pytest.fixture(autouse=True)
def fresh_pool() -> Iterator[None]:
    """Each test starts with an unconfigured pool, and may see the one-time legacy `import:` warning again."""
    yield
    StoragePool.disconnect_all()
    StoragePool._config = None
    registry._warned.clear()


class Busy(BaseHTTPRequestHandler):
    """An S3 endpoint that finds every bucket and refuses every write: overloaded."""

    puts = 0

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_PUT(self) -> None:
        type(self).puts += 1
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
        self.send_response(503)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def busy_endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Busy.puts = 0
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
