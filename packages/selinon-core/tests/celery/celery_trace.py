"""The function tracer of the Celery tracing test, and the OpenTelemetry SDK of the processes that import it.

Every process (the test's own, each worker child) appends what it hears to files of its own in
``SELINON_TEST_TRACE_DIR``: 1.x trace events to ``events-<pid>.jsonl``, finished spans to ``spans-<pid>.jsonl``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from selinon.trace import Trace


def _directory() -> Path:
    return Path(os.environ["SELINON_TEST_TRACE_DIR"])


def record(event: int, details: dict[str, Any]) -> None:
    line = json.dumps({"event": Trace.event2str(event), "details": details}, default=str)
    with open(_directory() / f"events-{os.getpid()}.jsonl", "a", encoding="utf-8") as out:
        out.write(line + "\n")


def read(directory: Path, pattern: str) -> list[dict[str, Any]]:
    return [json.loads(line) for path in directory.glob(pattern) for line in path.read_text().splitlines() if line]


try:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
except ImportError:  # the test says what to install
    pass
else:

    class FileExporter(SpanExporter):  # type: ignore[misc]
        """Writes each finished span as one line of JSON, to a file of this process (children of a fork too)."""

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            with open(_directory() / f"spans-{os.getpid()}.jsonl", "a", encoding="utf-8") as out:
                for span in spans:
                    out.write(json.dumps(json.loads(span.to_json())) + "\n")
            return SpanExportResult.SUCCESS

    if "SELINON_TEST_TRACE_DIR" in os.environ and not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(FileExporter()))
        trace.set_tracer_provider(provider)
