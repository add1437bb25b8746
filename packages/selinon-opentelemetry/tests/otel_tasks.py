"""Tasks of the span tests: a retried one, a failing one, a fallback, and one that makes a span of its own."""

from __future__ import annotations

from typing import Any

from opentelemetry import trace

from selinon.task import SelinonTask

_tries: dict[str, int] = {}


class Flaky(SelinonTask):
    def run(self, node_args: Any) -> Any:
        _tries[self.task_id] = _tries.get(self.task_id, 0) + 1
        if _tries[self.task_id] == 1:
            raise ConnectionError("the warehouse is busy")
        return {"tries": _tries[self.task_id]}


class Broken(SelinonTask):
    def run(self, node_args: Any) -> Any:
        raise ValueError("broken on purpose")


class Rescue(SelinonTask):
    def run(self, node_args: Any) -> Any:
        return {"rescued": sorted(self.parent)}


class Inner(SelinonTask):
    """Calls something instrumented: its span must nest under the task's."""

    def run(self, node_args: Any) -> Any:
        with trace.get_tracer("otel_tasks").start_as_current_span("lookup"):
            return {"inner": True}
