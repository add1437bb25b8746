"""Load and fault drills through the storage pool, shared by the adapters' reliability tests."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from selinon import plugins
from selinon.hookspecs import hookimpl
from selinon.pool import StoragePool

FLOW, TASK = "reliabilityFlow", "reliabilityTask"


def result_for(task_id: str) -> dict[str, Any]:
    """The result stored for a task id: derived from it, so that every record can be checked for content."""
    return {"task_id": task_id, "digits": [ord(c) % 10 for c in task_id[-8:]], "text": f"result of {task_id}"}


@dataclass
class Outcome:
    """What happened to every call: the task ids reported stored, and the errors raised (by type name)."""

    stored: list[str] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    seconds: float = 0.0

    def check_all_present(self, task_name: str = TASK) -> None:
        """Every record a call reported stored is there, with the right content (read through the pool)."""
        wrong = [t for t in self.stored if StoragePool.retrieve(FLOW, task_name, t) != result_for(t)]
        assert not wrong, f"{len(wrong)} of {len(self.stored)} stored records are missing or wrong: {wrong[:5]}"


def hammer(
    prefix: str,
    records: int,
    threads: int,
    task_name: str = TASK,
    during: Callable[[], None] | None = None,
    retrieve: bool = True,
) -> Outcome:
    """Store (and read back) ``records`` results from ``threads`` threads through StoragePool.

    ``during`` runs in its own thread once a quarter of the records are stored (cut connections, restart a
    server...). A call that raises is recorded, not retried: the pool's own retry policy is what is tested.
    """
    outcome = Outcome()
    lock = threading.Lock()
    done = [0]
    quarter = threading.Event()

    def work(thread: int) -> None:
        for n in range(thread, records, threads):
            task_id = f"{prefix}-{n}"
            try:
                StoragePool.set({"n": n}, FLOW, task_name, task_id, result_for(task_id))
                if retrieve:
                    assert StoragePool.retrieve(FLOW, task_name, task_id) == result_for(task_id)
            except Exception as exc:  # recorded for the test to judge
                with lock:
                    outcome.errors.append(exc)
                continue
            with lock:
                outcome.stored.append(task_id)
                done[0] += 1
                if done[0] >= records // 4:
                    quarter.set()

    start = time.monotonic()
    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    fault = None
    if during is not None:
        quarter.wait(timeout=120)
        fault = threading.Thread(target=during)
        fault.start()
    for worker in workers:
        worker.join()
    if fault is not None:
        fault.join()
    outcome.seconds = time.monotonic() - start
    return outcome


class StorageEvents:
    """A ``storage_event`` hook plugin that counts the pool's events and keeps the errors of its retries.

    ``events["retry"]`` counts retries, ``events["store"]`` successful stores, ``events["store failed"]`` stores
    that failed for good; ``retried`` is set at the first retry.
    """

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.retries: list[BaseException] = []
        self.retried = threading.Event()
        self._lock = threading.Lock()

    @hookimpl
    def storage_event(self, event: str, error: BaseException | None) -> None:
        with self._lock:
            self.counts[event if error is None or event == "retry" else f"{event} failed"] += 1
            if event == "retry" and error is not None:
                self.retries.append(error)
        if event == "retry":
            self.retried.set()

    def __getitem__(self, event: str) -> int:
        with self._lock:
            return self.counts[event]


def storage_events() -> Iterator[StorageEvents]:
    """Record the pool's events while the caller runs; use as a fixture: ``events = pytest.fixture(storage_events,
    name="events")``."""
    recorder = StorageEvents()
    plugins.pm.register(recorder)
    try:
        yield recorder
    finally:
        plugins.pm.unregister(recorder)
