"""A benchmark worker, run by any Selinon's interpreter and driven over a pipe (one JSON request per line).

The same worker runs in this checkout's environment and in one holding Selinon 1.4.0 with the drivers it runs
on, so both sides of a comparison do the same work in the same kind of process; only the Selinon differs.
It needs nothing beyond the standard library and the Selinon it imports.

Requests: {"op": "adapter", "classname", "configuration", "size", "label"} builds and connects an adapter;
{"op": "measure", "seconds"} runs store+retrieve pairs for that long and answers {"operations", "elapsed"};
{"op": "close"}.
Each pair stores under a task id never used before: Selinon 1.4's SQL and MongoDB adapters insert, and
cannot store a task id twice.
"""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import json
import sys
import time
import traceback
from typing import Any

FLOW, TASK, NODE_ARGS = "benchFlow", "benchTask", {"url": "https://example.com/page"}
#: Selinon 1.4.0's adapter classes, by the classname this project's adapters are registered under.
SELINON_1 = {
    "Redis": "selinon.storages.redis:Redis",
    "PostgreSQL": "selinon.storages.postgresql:PostgreSQL",
    "MongoDB": "selinon.storages.mongodb:MongoDB",
    "S3Storage": "selinon.storages.s3:S3",
}


def payload(size: int) -> dict[str, Any]:
    """A JSON result of about ``size`` bytes (the same as benchmarks/adapters.py's)."""
    return {"status": "ok", "items": list(range(10)), "text": "x" * max(0, size - 80)}


def adapter_class(classname: str) -> Any:
    if importlib.util.find_spec("selinon.registry") is not None:  # this project: through the registry
        from selinon.registry import resolve

        return resolve(classname)
    module, _, name = SELINON_1[classname].partition(":")
    return getattr(importlib.import_module(module), name)


class Worker:
    def __init__(self) -> None:
        self.adapter: Any = None
        self.pairs: Any = None

    def adapter_op(self, classname: str, configuration: dict[str, Any], size: int, label: str) -> dict[str, Any]:
        adapter = adapter_class(classname)(**configuration)
        adapter.connect()
        result = payload(size)
        ids = (f"{label}-{i}" for i in itertools.count())
        first = next(ids)
        adapter.store(NODE_ARGS, FLOW, TASK, first, result)
        back = adapter.retrieve(FLOW, TASK, first)
        if back != result:
            raise AssertionError(f"{classname} returned another value than the one stored: {str(back)[:80]}")

        def pairs(n: int) -> None:
            for _ in range(n):
                task_id = next(ids)
                adapter.store(NODE_ARGS, FLOW, TASK, task_id, result)
                adapter.retrieve(FLOW, TASK, task_id)

        self.adapter, self.pairs = adapter, pairs
        return {}

    def measure_op(self, seconds: float) -> dict[str, Any]:
        n, start, batch = 0, time.perf_counter(), 1
        while True:
            self.pairs(batch)
            n += batch
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                return {"operations": n, "elapsed": elapsed}
            batch = min(batch * 2, 256)

    def close_op(self) -> dict[str, Any]:
        if self.adapter is not None:
            self.adapter.disconnect()
        self.adapter = self.pairs = None
        return {}


def main() -> None:
    worker = Worker()
    for line in sys.stdin:
        request = json.loads(line)
        op = request.pop("op")
        try:
            answer = getattr(worker, f"{op}_op")(**request)
        except Exception as exc:
            answer = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
