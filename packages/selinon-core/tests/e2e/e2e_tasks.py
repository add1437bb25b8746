"""Tasks of the end-to-end fault tests. Each run is counted, so that a test can tell that no task ran twice, and
a test may act (inject a fault) at the end of a task's run, just before its result is stored."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from selinon.task import SelinonTask

RUNS: list[tuple[str, str, float]] = []  # (task name, task id, time.monotonic()), one per call of run()
_lock = threading.Lock()

#: Called with the task at the end of each run, before the result is returned (and stored).
before_store: Callable[[SelinonTask], None] | None = None


def reset() -> None:
    global before_store
    with _lock:
        RUNS.clear()
    before_store = None


def runs() -> Counter[str]:
    with _lock:
        return Counter(name for name, _, _ in RUNS)


def started(task_name: str) -> float:
    """When ``task_name`` first began to run (time.monotonic())."""
    with _lock:
        return min(at for name, _, at in RUNS if name == task_name)


class Echo(SelinonTask):
    """Returns its name, its node arguments and the results of its parents, read from their storages."""

    def run(self, node_args: Any) -> Any:
        with _lock:
            RUNS.append((self.task_name, self.task_id, time.monotonic()))
        parents = {name: self.parent_task_result(name) for name in sorted(self.parent)}
        result = {"task": self.task_name, "task_id": self.task_id, "args": node_args, "parents": parents}
        if before_store is not None:
            before_store(self)
        return result
