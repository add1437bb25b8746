"""Tasks for the flow tests; each records its runs, so that tests can tell that nothing ran twice."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from selinon.task import SelinonTask

RUNS: list[tuple[str, str]] = []  # (task name, task id), one per run() call
_lock = threading.Lock()
barrier: threading.Barrier | None = None


def runs_per_task() -> Counter[str]:
    return Counter(name for name, _ in RUNS)


class Recorded(SelinonTask):
    def run(self, node_args: Any) -> Any:
        with _lock:
            RUNS.append((self.task_name, self.task_id))
            self.try_number = sum(task_id == self.task_id for _, task_id in RUNS)
        return self.work(node_args)

    def work(self, node_args: Any) -> Any:
        raise NotImplementedError


class Echo(Recorded):
    """Returns its name, its node arguments and its parents' results."""

    def work(self, node_args: Any) -> Any:
        parents = {name: self.parent_task_result(name) for name in sorted(self.parent)}
        return {"task": self.task_name, "args": node_args, "parents": parents}


class Status(Recorded):
    def work(self, node_args: Any) -> Any:
        return {"status": node_args["status"], "nested": {"codes": [200, node_args.get("code")]}}


class Counter3(Recorded):
    """Counts up from 0 along a loop: each instance adds one to its parent's count."""

    def work(self, node_args: Any) -> Any:
        n = self.parent_task_result("Loop")["n"] + 1 if "Loop" in self.parent else 0
        return {"n": n}


class Fail(Recorded):
    def work(self, node_args: Any) -> Any:
        raise ValueError(f"boom in {self.task_name}")


class FailFirst(Recorded):
    """Fails its first ``node_args['failures']`` tries."""

    def work(self, node_args: Any) -> Any:
        if self.try_number <= node_args["failures"]:
            raise ConnectionError(f"try {self.try_number} failed")
        return {"tries": self.try_number}


class AskRetry(Recorded):
    def work(self, node_args: Any) -> Any:
        if self.try_number == 1:
            self.retry(countdown=0.01)
        return {"tries": self.try_number}


class Storage(Recorded):
    """Reports what its ``storage`` property gives."""

    def work(self, node_args: Any) -> Any:
        storage = self.storage
        return {"storage": type(storage).__name__ if storage is not None else None}


class Together(Recorded):
    """Passes only when three of its kind run at the same time."""

    def work(self, node_args: Any) -> Any:
        assert barrier is not None
        barrier.wait()
        return {"ok": True}


class Ids(Recorded):
    def work(self, node_args: Any) -> Any:
        return {"flow": self.flow_name, "task_id": self.task_id, "dispatcher_id": self.dispatcher_id}


class Number(Recorded):
    def work(self, node_args: Any) -> Any:
        return {"number": node_args["value"]}


class NotATask:
    def run(self, node_args: Any) -> Any:
        return None
