"""What `global: trace:` names in the tracing tests: a function and a storage with a trace method."""

from __future__ import annotations

from typing import Any, ClassVar

from selinon.storages.memory import InMemoryStorage

#: (1.x event number, details) of every call.
CALLS: list[tuple[int, dict[str, Any]]] = []
NOT_A_FUNCTION = 42


def record(event: int, details: dict[str, Any]) -> None:
    CALLS.append((event, details))


class TraceStorage(InMemoryStorage):
    """A storage that 1.x's `storage:` tracer calls: `trace(event, details)`."""

    calls: ClassVar[list[tuple[int, dict[str, Any]]]] = []

    def trace(self, event: int, details: dict[str, Any]) -> None:
        self.calls.append((event, details))
