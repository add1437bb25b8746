"""The test server as the contract suite and the fault drills see it, bypassing the adapter under test.

An adapter's tests give a :class:`Backend` through the ``backend`` fixture; without one, the checks that need
to look at the server itself (one record per task id, no connection left open) are skipped.
"""

from __future__ import annotations

import os
import socket
from collections import Counter
from pathlib import Path


class Backend:
    """What the suites may ask the server, through its own driver (never through the adapter)."""

    #: Host and port the adapter connects to; the suites count this process's open sockets to it. None for a
    #: backend reached otherwise (a file, a unix socket): the connection checks are then skipped.
    address: tuple[str, int] | None = None

    def records(self, prefix: str) -> Counter[str]:
        """How many records the server holds for each task id that starts with ``prefix`` (0 is left out)."""
        raise NotImplementedError

    def open_connections(self) -> int | None:
        """How many connections this process holds open to the server now; None when it cannot tell."""
        return None if self.address is None else open_sockets(*self.address)


def open_sockets(host: str, port: int) -> int | None:
    """How many TCP sockets this process holds open (any state) to host:port; None where /proc cannot tell.

    Read from the process's file descriptors, so a socket a driver dropped without closing still counts until
    it is really closed."""
    fds = Path("/proc/self/fd")
    if not fds.is_dir():
        return None
    inodes = set()
    for fd in os.listdir(fds):
        try:
            target = os.readlink(fds / fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)}
    wanted = {_proc_address(address, port) for address in addresses}
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[2] in wanted and fields[9] in inodes and fields[3] != "0A":  # 0A: listening
                count += 1
    return count


def _proc_address(address: str, port: int) -> str:
    """An address as /proc/net/tcp{,6} spell it: the packed IP as 32-bit little-endian words, in hex."""
    packed = socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address)
    words = [packed[i : i + 4][::-1].hex().upper() for i in range(0, len(packed), 4)]
    return f"{''.join(words)}:{port:04X}"
