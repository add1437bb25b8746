"""Test kit for storage adapters: the contract suite, the fault drills, and helpers to reach or start test
servers.

Needs pytest, and is imported only by tests::

    from selinon.testing import StorageContract, StorageDrills

    class TestMyStorage(StorageContract):
        @pytest.fixture
        def storage_factory(self):
            return lambda: MyStorage(host="127.0.0.1")

    class TestMyStorageDrills(StorageDrills):
        classname = "MyStorage"

        @pytest.fixture
        def server_address(self):
            return ("127.0.0.1", 7000)

        def configuration(self, host, port, timeout):
            return {"host": host, "port": port, "connect_timeout": timeout}
"""

from selinon.testing.backend import Backend, open_sockets
from selinon.testing.contract import StorageContract
from selinon.testing.drills import StorageDrills
from selinon.testing.proxy import TcpProxy, TlsTerminator
from selinon.testing.services import (
    ServerProcess,
    exception_text,
    free_port,
    planted_secret,
    require_service,
    timed,
    wait_for_port,
    wait_until,
)

__all__ = [
    "Backend",
    "ServerProcess",
    "StorageContract",
    "StorageDrills",
    "TcpProxy",
    "TlsTerminator",
    "exception_text",
    "free_port",
    "open_sockets",
    "planted_secret",
    "require_service",
    "timed",
    "wait_for_port",
    "wait_until",
]
