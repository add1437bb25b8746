"""The storage contract, against the test server, with the collection looked at through pymongo."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from conftest import MakeStorage, MongoBackend, Server
from pymongo import MongoClient

from selinon import DataStorage
from selinon.testing import StorageContract, free_port


class TestMongoDBContract(StorageContract):
    @pytest.fixture
    def storage_factory(self, make_storage: MakeStorage) -> Callable[[], DataStorage]:
        return make_storage

    @pytest.fixture
    def backend(self, server: Server, client: MongoClient[dict[str, Any]], collection_name: str) -> MongoBackend:
        return MongoBackend(server, client, collection_name)

    @pytest.fixture
    def secret_storage_factory(self, make_storage: MakeStorage) -> Callable[[str], DataStorage]:
        return lambda secret: make_storage(
            uri=None, host="127.0.0.1", port=free_port(), username="bob", password=secret, connect_timeout=2
        )
