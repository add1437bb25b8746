"""Both built-in storages pass the contract that every adapter must."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from selinon.storage import DataStorage
from selinon.storages.filesystem import Filesystem
from selinon.storages.memory import InMemoryStorage
from selinon.testing import StorageContract


class TestInMemoryStorageJson(StorageContract):
    @pytest.fixture
    def storage_factory(self) -> Callable[[], DataStorage]:
        shared = InMemoryStorage(json=True)  # one process-wide store survives reconnects, as in a worker
        return lambda: shared


class TestInMemoryStoragePlain(StorageContract):
    @pytest.fixture
    def storage_factory(self) -> Callable[[], DataStorage]:
        shared = InMemoryStorage()
        return lambda: shared


class TestFilesystem(StorageContract):
    @pytest.fixture
    def storage_factory(self, tmp_path: Path) -> Callable[[], DataStorage]:
        return lambda: Filesystem(path=str(tmp_path / "results"))
