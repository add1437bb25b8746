"""Test kit for storage adapters: the contract suite, and helpers to reach or start test servers.

Needs pytest, and is imported only by tests::

    from selinon.testing import StorageContract

    class TestMyStorage(StorageContract):
        @pytest.fixture
        def storage_factory(self):
            return lambda: MyStorage(host="127.0.0.1")
"""

from selinon.testing.contract import StorageContract
from selinon.testing.proxy import TcpProxy, TlsTerminator
from selinon.testing.services import (
    ServerProcess,
    exception_text,
    free_port,
    planted_secret,
    require_service,
    wait_for_port,
)

__all__ = [
    "ServerProcess",
    "StorageContract",
    "TcpProxy",
    "TlsTerminator",
    "exception_text",
    "free_port",
    "planted_secret",
    "require_service",
    "wait_for_port",
]
