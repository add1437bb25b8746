"""The storage contract, against the test server."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import MakeStorage

from selinon import DataStorage
from selinon.testing import StorageContract


class TestMongoDBContract(StorageContract):
    @pytest.fixture
    def storage_factory(self, make_storage: MakeStorage) -> Callable[[], DataStorage]:
        return make_storage
