"""The storage contract, against the test S3 endpoint, with the bucket looked at through boto3."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from conftest import Endpoint, S3Backend
from selinon_storage_s3 import S3Storage

from selinon.testing import StorageContract, free_port


@pytest.fixture(scope="module")
def contract_bucket(s3: Endpoint) -> str:
    return s3.new_bucket()


class S3Contract(StorageContract):
    @pytest.fixture
    def secret_storage_factory(self) -> Callable[[str], S3Storage]:
        return lambda secret: S3Storage(
            bucket="secret-bucket", endpoint_url=f"http://127.0.0.1:{free_port()}",
            aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key=secret, connect_timeout=2,
        )  # fmt: skip


class TestS3Contract(S3Contract):
    @pytest.fixture
    def prefix(self) -> str:
        return f"contract/{uuid.uuid4()}/"

    @pytest.fixture
    def storage_factory(self, s3: Endpoint, contract_bucket: str, prefix: str) -> Callable[[], S3Storage]:
        return lambda: s3.storage(bucket=contract_bucket, prefix=prefix)

    @pytest.fixture
    def backend(self, s3: Endpoint, contract_bucket: str, prefix: str) -> S3Backend:
        return S3Backend(s3, contract_bucket, prefix)


class TestS3ContractWithoutPrefix(S3Contract):
    """The default prefix (none): keys are the encoded task ids at the top of the bucket."""

    large_payload_bytes = 1024 * 1024
    threads = 4
    records_per_thread = 10

    @pytest.fixture
    def bucket(self, s3: Endpoint) -> str:
        return s3.new_bucket()

    @pytest.fixture
    def storage_factory(self, s3: Endpoint, bucket: str) -> Callable[[], S3Storage]:
        return lambda: s3.storage(bucket=bucket)

    @pytest.fixture
    def backend(self, s3: Endpoint, bucket: str) -> S3Backend:
        return S3Backend(s3, bucket)
