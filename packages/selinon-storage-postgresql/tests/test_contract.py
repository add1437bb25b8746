"""The storage contract, on each database the adapter supports, with the table looked at through SQLAlchemy."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import MakeStorage, SqlBackend
from selinon_storage_postgresql import SqlStorage

from selinon import DataStorage
from selinon.testing import StorageContract, free_port


class SqlContract(StorageContract):
    url_fixture: str

    @pytest.fixture
    def url(self, request: pytest.FixtureRequest) -> str:
        url: str = request.getfixturevalue(self.url_fixture)
        return url

    @pytest.fixture
    def storage_factory(self, url: str, make_storage: MakeStorage) -> Callable[[], DataStorage]:
        return lambda: make_storage(url)

    @pytest.fixture
    def backend(self, url: str, table_name: str) -> SqlBackend:
        return SqlBackend(url, table_name)


class TestPostgreSQLContract(SqlContract):
    url_fixture = "postgresql_url"

    @pytest.fixture
    def secret_storage_factory(self) -> Callable[[str], DataStorage]:
        return lambda secret: SqlStorage(f"postgresql://postgres:{secret}@127.0.0.1:{free_port()}/test")


class TestSQLiteContract(SqlContract):
    url_fixture = "sqlite_url"


class TestMariaDBContract(SqlContract):
    url_fixture = "mysql_url"

    @pytest.fixture
    def secret_storage_factory(self) -> Callable[[str], DataStorage]:
        return lambda secret: SqlStorage(f"mysql+pymysql://root:{secret}@127.0.0.1:{free_port()}/test")
