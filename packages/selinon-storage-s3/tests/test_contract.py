"""The storage contract, against the test S3 endpoint."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from conftest import Endpoint
from selinon_storage_s3 import S3Storage

from selinon.testing import StorageContract


@pytest.fixture(scope="module")
def contract_bucket(s3: Endpoint) -> str:
    return s3.new_bucket()


class TestS3Contract(StorageContract):
    @pytest.fixture
    def storage_factory(self, s3: Endpoint, contract_bucket: str) -> Callable[[], S3Storage]:
        prefix = f"contract/{uuid.uuid4()}/"
        return lambda: s3.storage(bucket=contract_bucket, prefix=prefix)


class TestS3ContractWithoutPrefix(StorageContract):
    """The default prefix (none): keys are the encoded task ids at the top of the bucket."""

    large_payload_bytes = 1024 * 1024
    threads = 4
    records_per_thread = 10

    @pytest.fixture
    def storage_factory(self, s3: Endpoint) -> Callable[[], S3Storage]:
        bucket = s3.new_bucket()
        return lambda: s3.storage(bucket=bucket)
