"""The storage contract, on each database the adapter supports."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import MakeStorage

from selinon import DataStorage
from selinon.testing import StorageContract


class TestPostgreSQLContract(StorageContract):
    @pytest.fixture
    def storage_factory(self, postgresql_url: str, make_storage: MakeStorage) -> Callable[[], DataStorage]:
        return lambda: make_storage(postgresql_url)


class TestSQLiteContract(StorageContract):
    @pytest.fixture
    def storage_factory(self, sqlite_url: str, make_storage: MakeStorage) -> Callable[[], DataStorage]:
        return lambda: make_storage(sqlite_url)


class TestMariaDBContract(StorageContract):
    @pytest.fixture
    def storage_factory(self, mysql_url: str, make_storage: MakeStorage) -> Callable[[], DataStorage]:
        return lambda: make_storage(mysql_url)
