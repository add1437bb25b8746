"""The test kit's TCP proxy, against a real Redis (the machine's, or one the session starts), since the adapters'
fault tests rely on it."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import pytest

from selinon.testing import TcpProxy, require_service, servers


def ping(port: int, timeout: float = 3) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(100)


def test_forwards_cuts_and_refuses() -> None:
    parts = urlsplit(servers.provide("redis"))
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    require_service("Redis", host, port, servers.how_to_start("redis"))
    with TcpProxy(host, port) as proxy:
        assert ping(proxy.port) == b"+PONG\r\n"
        held = socket.create_connection(("127.0.0.1", proxy.port), timeout=3)
        held.sendall(b"PING\r\n")
        assert held.recv(100) == b"+PONG\r\n"
        assert proxy.cut() == 1
        with pytest.raises(OSError):
            held.sendall(b"PING\r\n")
            if not held.recv(100):
                raise ConnectionResetError("closed by the proxy")
        held.close()
        proxy.refuse()
        with pytest.raises(OSError):
            ping(proxy.port) or (_ for _ in ()).throw(ConnectionResetError("refused"))
        proxy.accept()
        assert ping(proxy.port) == b"+PONG\r\n"


def test_hold_answers_nothing_until_accepted() -> None:
    require_service("Redis", "127.0.0.1", 6379, "start the machine's Redis")
    with TcpProxy("127.0.0.1", 6379) as proxy:
        open_before = socket.create_connection(("127.0.0.1", proxy.port), timeout=3)
        open_before.sendall(b"PING\r\n")
        assert open_before.recv(100) == b"+PONG\r\n"
        proxy.hold()
        with pytest.raises(TimeoutError):
            ping(proxy.port, timeout=0.5)  # a new connection is accepted, and answered by nothing
        open_before.settimeout(0.5)
        open_before.sendall(b"PING\r\n")
        with pytest.raises(TimeoutError):
            open_before.recv(100)  # an open one forwards nothing either
        proxy.accept()
        open_before.settimeout(3)
        assert open_before.recv(100) == b"+PONG\r\n"  # what was held goes through
        open_before.close()
        assert ping(proxy.port) == b"+PONG\r\n"
