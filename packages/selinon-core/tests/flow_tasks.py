"""Tasks for the flow tests; each records its runs, so that tests can tell that nothing ran twice."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from selinon.errors import FatalTaskError
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


class Fatal(Recorded):
    def work(self, node_args: Any) -> Any:
        raise FatalTaskError(f"no point in retrying {self.task_name}")


class Exceptions(Recorded):
    """A fallback: the class and message of each failed parent's exception (a sub-flow's, by its failed tasks)."""

    def work(self, node_args: Any) -> Any:
        found = {}
        for name, entry in sorted(self.parent.items()):
            if isinstance(entry, str):
                exc = self.parent_task_exception(name)
                found[name] = [type(exc).__name__, str(exc)]
            else:
                for task_name in sorted(entry):
                    exc = self.parent_flow_exception(name, task_name)
                    found[f"{name}/{task_name}"] = [type(exc).__name__, str(exc)]
        return found


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


class Clock(Recorded):
    """Returns when it started (wall clock), for throttling tests."""

    def work(self, node_args: Any) -> Any:
        return {"at": time.time()}


class Countdown(Recorded):
    """Returns its node arguments' ``n``: a recursive flow counts down with it."""

    def work(self, node_args: Any) -> Any:
        return {"n": node_args["n"]}


class Parents(Recorded):
    """Returns the parent mapping it was given (ids, or sub-flows' tasks nested under their names)."""

    def work(self, node_args: Any) -> Any:
        return {"parent": self.parent, "args": node_args}


def items_of_args(storage_pool: Any, node_args: Any) -> list[Any]:
    """foreach: the node arguments' ``items``."""
    return list(node_args["items"])


def items_of_parent(storage_pool: Any, node_args: Any) -> list[Any]:
    """foreach: one item per entry of the parent Task1's result ``items``, as sub-flow node arguments."""
    return [{"item": item} for item in storage_pool.get("Task1")["args"]["items"]]


def count_down(storage_pool: Any, node_args: Any) -> list[Any]:
    """foreach: the next level of a recursive flow, while ``n`` is above 0."""
    n = storage_pool.get("Step")["n"]
    return [{"n": n - 1}] if n > 0 else []


#: Task name -> the task id a selective run reuses instead of running the task.
REUSE: dict[str, str] = {}


def reuse_known(flow_name: str, node_name: str, node_args: Any, task_names: list[str], storage_pool: Any) -> Any:
    """selective_run_function: reuse the result recorded in REUSE, if any."""
    return REUSE.get(node_name)


class Sleep(Recorded):
    """Takes a third of a second."""

    def work(self, node_args: Any) -> Any:
        time.sleep(0.3)
        return {"slept": True}


#: Only ever in the result of Marked: tests look for it in what observers were told.
RESULT_MARKER = "only-in-a-result-7f3a"


class Marked(Recorded):
    def work(self, node_args: Any) -> Any:
        return {"marker": RESULT_MARKER}
