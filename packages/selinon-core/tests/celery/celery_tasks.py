"""Tasks of the Celery tests: a small order flow. Each run is recorded in a file, so tests can count runs across
worker processes; results never mention that file, so the local executor stores the same ones."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from selinon.errors import FatalTaskError
from selinon.task import SelinonTask


class Recorded(SelinonTask):
    def run(self, node_args: Any) -> Any:
        runs = Path(node_args["dir"]) / "runs"
        with open(runs, "a", encoding="utf-8") as out:
            out.write(f"{self.task_name} {self.task_id} {os.getpid()}\n")
        self.try_number = sum(line.split()[1] == self.task_id for line in runs.read_text().splitlines())
        return self.work(node_args)

    def work(self, node_args: Any) -> Any:
        raise NotImplementedError


def runs(directory: Path) -> list[tuple[str, str]]:
    """(task name, task id) of every run recorded in ``directory``."""
    path = directory / "runs"
    lines = path.read_text().splitlines() if path.exists() else []
    return [(line.split()[0], line.split()[1]) for line in lines]


class Order(Recorded):
    def work(self, node_args: Any) -> Any:
        items = node_args.get("items") or []
        if not items:
            raise ValueError(f"order {node_args['order']} has no items")
        total = round(sum(item["price"] * item["quantity"] for item in items), 2)
        return {"order": node_args["order"], "total": total, "express": bool(node_args.get("express"))}


class Reserve(Recorded):
    """The warehouse is busy on the first try: the task is retried (max_retry in the YAML)."""

    def work(self, node_args: Any) -> Any:
        if self.try_number == 1:
            raise ConnectionError("the warehouse is busy")
        order = self.parent_task_result("Order")
        return {"order": order["order"], "reservation": f"R-{order['order']}", "tries": self.try_number}


class Express(Recorded):
    def work(self, node_args: Any) -> Any:
        return {"carrier": "courier", "days": 1}


class Standard(Recorded):
    def work(self, node_args: Any) -> Any:
        order = self.parent_task_result("Order")
        return {"carrier": "post", "days": 4, "free": order["total"] >= 50}


class Confirm(Recorded):
    def work(self, node_args: Any) -> Any:
        stock = self.parent_task_result("Reserve")
        branch = "Express" if "Express" in self.parent else "Standard"
        return {"reservation": stock["reservation"], "shipping": self.parent_task_result(branch)}


class Audit(Recorded):
    """The one task of the sub-flow; it gets the order through propagate_node_args."""

    def work(self, node_args: Any) -> Any:
        return {"audited": node_args["order"]}


class Slow(Recorded):
    """Takes long on its first run (a worker is killed in the middle of it); quick when it runs again."""

    def work(self, node_args: Any) -> Any:
        if self.try_number == 1:
            (Path(node_args["dir"]) / "slow-started").write_text(self.task_id)
            time.sleep(120)
        return {"slow": "done"}


class After(Recorded):
    def work(self, node_args: Any) -> Any:
        return {"after": self.parent_task_result("Slow")}


class Item(Recorded):
    """One item of an order: the node arguments' ``sku`` (given to sub-flows by foreach), else none."""

    def work(self, node_args: Any) -> Any:
        return {"sku": node_args.get("sku")}


class Note(Recorded):
    """Started without the flow waiting for it (nowait); it fails, and the flow does not mind."""

    def work(self, node_args: Any) -> Any:
        raise RuntimeError("the note printer is out of paper")


class Broken(Recorded):
    def work(self, node_args: Any) -> Any:
        raise ValueError("broken on purpose")


class Rescue(Recorded):
    """A fallback, or a task after a sub-flow: returns the parent mapping it was given."""

    def work(self, node_args: Any) -> Any:
        return {"parent": self.parent}


class Doomed(Recorded):
    """Fails in a way no retry can fix."""

    def work(self, node_args: Any) -> Any:
        raise FatalTaskError("the order was cancelled")


class Excuse(Recorded):
    """A fallback: the class and message of each failed parent's exception."""

    def work(self, node_args: Any) -> Any:
        found = {}
        for name in sorted(self.parent):
            exc = self.parent_task_exception(name)
            found[name] = [type(exc).__name__, str(exc)]
        return found


class Step(Recorded):
    """One level of a recursive flow: the node arguments' ``n``."""

    def work(self, node_args: Any) -> Any:
        return {"n": node_args["n"]}


class Tick(Recorded):
    """A throttled task: returns when it started."""

    def work(self, node_args: Any) -> Any:
        return {"at": time.time()}


class Lag(Recorded):
    def work(self, node_args: Any) -> Any:
        time.sleep(1.5)
        return {"lagged": True}


def order_items(storage_pool: Any, node_args: Any) -> list[Any]:
    """foreach: the order's items (each started with the flow's node arguments)."""
    return list(node_args["items"])


def item_args(storage_pool: Any, node_args: Any) -> list[Any]:
    """foreach with propagate_result: one sub-flow per item, its node arguments naming the item."""
    order = storage_pool.get("Order")
    return [{"dir": node_args["dir"], "sku": item["sku"], "order": order["order"]} for item in node_args["items"]]


def count_down(storage_pool: Any, node_args: Any) -> list[Any]:
    """foreach of a recursive flow: the next level while ``n`` is above 0."""
    n = storage_pool.get("Step")["n"]
    return [{"dir": node_args["dir"], "n": n - 1}] if n > 0 else []


class Patient(Recorded):
    """Fails its first two tries (max_retry 2 and retry_countdown 1.5 in the YAML), then succeeds."""

    def work(self, node_args: Any) -> Any:
        if self.try_number < 3:
            raise ConnectionError(f"try {self.try_number}: not yet")
        return {"tries": self.try_number}


class Stamp(Recorded):
    """Returns when it started; not throttled itself (its flow is)."""

    def work(self, node_args: Any) -> Any:
        return {"at": time.time()}


class Flaky(Recorded):
    """Fails its first try; its second succeeds (max_retry: 1)."""

    def work(self, node_args: Any) -> Any:
        if self.try_number == 1:
            raise ConnectionError("the courier is late")
        return {"tries": self.try_number}


class Gate(Recorded):
    """Waits until the test opens the gate (a file `gate` in the run's directory), a minute at most."""

    def work(self, node_args: Any) -> Any:
        gate = Path(node_args["dir"]) / "gate"
        deadline = time.monotonic() + 60
        while not gate.exists():
            if time.monotonic() > deadline:
                raise TimeoutError("the gate never opened")
            time.sleep(0.1)
        return {"gate": "passed"}


class Nap(Recorded):
    """Runs for ``nap`` seconds (default 3); returns when it woke."""

    def work(self, node_args: Any) -> Any:
        time.sleep(node_args.get("nap", 3))
        return {"woke": time.time()}
