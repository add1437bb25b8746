from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import pytest
from conftest import RedisBackend
from selinon_storage_redis import Redis

from selinon.testing import StorageContract, free_port


class TestRedisContract(StorageContract):
    """The contract on the shared server, reached through `url`, with the server looked at through redis-py."""

    @pytest.fixture
    def storage_factory(self, redis_url: str, key_prefix: str) -> Callable[[], Redis]:
        return lambda: Redis(url=redis_url, key_prefix=key_prefix)

    @pytest.fixture
    def backend(self, redis_backend: RedisBackend) -> RedisBackend:
        return redis_backend

    @pytest.fixture
    def secret_storage_factory(self) -> Callable[[str], Redis]:
        return lambda secret: Redis(url=f"redis://admin:{secret}@127.0.0.1:{free_port()}/0", connect_timeout=2)


class TestRedisContractHostPortTtl(StorageContract):
    """The contract again through `host`/`port`/`db`, with records that expire."""

    @pytest.fixture
    def storage_factory(self, redis_url: str, key_prefix: str) -> Callable[[], Redis]:
        parts = urlsplit(redis_url)
        db = int(parts.path.strip("/") or 0)
        return lambda: Redis(host=parts.hostname, port=parts.port, db=db, key_prefix=key_prefix, ttl=600)

    @pytest.fixture
    def backend(self, redis_backend: RedisBackend) -> RedisBackend:
        return redis_backend

    @pytest.fixture
    def secret_storage_factory(self) -> Callable[[str], Redis]:
        return lambda secret: Redis(host="127.0.0.1", port=free_port(), password=secret, connect_timeout=2)
