from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import pytest
from selinon_storage_redis import Redis

from selinon.testing import StorageContract


class TestRedisContract(StorageContract):
    """The contract on the shared server, reached through `url`."""

    @pytest.fixture
    def storage_factory(self, redis_url: str, key_prefix: str) -> Callable[[], Redis]:
        return lambda: Redis(url=redis_url, key_prefix=key_prefix)


class TestRedisContractHostPortTtl(StorageContract):
    """The contract again through `host`/`port`/`db`, with records that expire."""

    @pytest.fixture
    def storage_factory(self, redis_url: str, key_prefix: str) -> Callable[[], Redis]:
        parts = urlsplit(redis_url)
        db = int(parts.path.strip("/") or 0)
        return lambda: Redis(host=parts.hostname, port=parts.port, db=db, key_prefix=key_prefix, ttl=600)
