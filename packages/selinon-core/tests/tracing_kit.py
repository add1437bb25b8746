"""What the tracing tests share: a flow with a retry, a failure, a fallback and a sub-flow, and a Sentry server
of our own (an HTTP endpoint that keeps what sentry-sdk's real transport sends it)."""

from __future__ import annotations

import gzip
import json
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from flowkit import MEMORY, flow, task

from selinon import flows

#: The flow of every tracing test, and the YAML of the local tests.
TASKS = [
    task("Flaky", "FailFirst", max_retry=1, retry_countdown=0),
    task("Broken", "Fail"),
    task("Rescue", "Ids"),
    task("Inner", "Marked"),
]
FLOWS = [
    flow(
        "main",
        {"from": [], "to": ["Flaky", "Broken"]},
        {"from": "Flaky", "to": "sub"},
        failures=[{"nodes": ["Broken"], "fallback": ["Rescue"]}],
    ),
    flow("sub", {"from": [], "to": "Inner"}),
]
NODE_ARGS = {"failures": 1}


def traced_system(trace: Any = None, storages: list[dict[str, Any]] | None = None) -> flows.System:
    """The flow's configuration, with ``global: trace:`` set to ``trace`` when it is given."""
    documents = [
        ("nodes.yaml", {"storages": [MEMORY, *(storages or [])], "tasks": TASKS}),
        ("flows.yaml", {"flow-definitions": FLOWS}),
    ]
    if trace is not None:
        documents.append(("trace.yaml", {"global": {"trace": trace}}))
    return flows.from_documents(documents)


class SentryServer:
    """Receives envelopes as a Sentry server would; ``events()`` gives the error events, decoded."""

    def __init__(self) -> None:
        self.envelopes: list[bytes] = []
        self.received = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                elif encoding == "br":
                    import brotli  # type: ignore[import-not-found]

                    body = brotli.decompress(body)
                with outer.received:
                    outer.envelopes.append(body)
                    outer.received.notify_all()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def dsn(self, key: str = "publickey") -> str:
        return f"http://{key}@127.0.0.1:{self.port}/1"

    def events(self) -> list[dict[str, Any]]:
        """Every error event received so far (the envelope items of type ``event``)."""
        found = []
        for envelope in self.envelopes:
            lines = envelope.split(b"\n")
            for header, payload in zip(lines[1::2], lines[2::2], strict=False):
                if json.loads(header).get("type") == "event":
                    found.append(json.loads(payload))
        return found

    def wait_for(self, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        with self.received:
            self.received.wait_for(lambda: len(self.events()) >= count, timeout)
        return self.events()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def sentry_server() -> Iterator[SentryServer]:
    server = SentryServer()
    yield server
    server.close()
