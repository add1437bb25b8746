"""Adapters that record how the pool calls them, for the pool's own tests."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from selinon import DataStorage, StorageError, TransientStorageError
from selinon.storages.memory import InMemoryStorage


class Watched(InMemoryStorage):
    """Counts calls, the most calls in flight at once, and remembers the process that built it."""

    thread_safe = False

    def __init__(self, password: str | None = None, fail_with: str | None = None) -> None:
        super().__init__(json=True)
        self.password = password
        self.fail_with = fail_with
        self.created_in = os.getpid()
        self.calls: list[tuple[str, str]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self._count_lock = threading.Lock()

    def _enter(self, name: str, task_name: str) -> None:
        with self._count_lock:
            self.calls.append((name, task_name))
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        time.sleep(0.002)  # widen the window in which overlapping calls would be seen
        with self._count_lock:
            self.in_flight -= 1

    def store(self, node_args: Any, flow_name: str, task_name: str, task_id: str, result: Any) -> str:
        if self.fail_with:
            raise RuntimeError(self.fail_with)
        self._enter("store", task_name)
        return super().store(node_args, flow_name, task_name, task_id, result)

    def retrieve(self, flow_name: str, task_name: str, task_id: str) -> Any:
        self._enter("retrieve", task_name)
        return super().retrieve(flow_name, task_name, task_id)


class Wrapping(Watched):
    """Fails every store with a message of its own, raised while handling the driver's, which shows the password."""

    def store(self, node_args: Any, flow_name: str, task_name: str, task_id: str, result: Any) -> str:
        try:
            raise RuntimeError(f"the driver sent password {self.password}")
        except RuntimeError:
            raise StorageError("the server refused the store") from None


class Picky(Watched):
    """Refuses its configuration with a message that shows the password."""

    def __init__(self, password: str | None = None) -> None:
        raise ValueError(f"password {password!r} is too short")


class WatchedThreadSafe(Watched):
    thread_safe = True


class NotAStorage:
    pass


class NeedsHost(DataStorage):
    def __init__(self, host: str, port: int = 1) -> None:
        self.host = host

    def connect(self) -> None: ...
    def disconnect(self) -> None: ...
    def is_connected(self) -> bool:
        return False

    def store(self, node_args: Any, flow_name: str, task_name: str, task_id: str, result: Any) -> None: ...
    def retrieve(self, flow_name: str, task_name: str, task_id: str) -> None: ...


class Flaky(InMemoryStorage):
    """Fails its first ``failures`` store/retrieve/delete calls with a lost connection, after doing the work when
    ``after_work`` is set (the reply was lost, not the request)."""

    def __init__(self, failures: int = 0, after_work: bool = False, wrapped: bool = False) -> None:
        super().__init__(json=True)
        self.failures = failures
        self.after_work = after_work
        self.wrapped = wrapped  # raise the core's TransientStorageError, as an adapter that wraps its driver does
        self.attempts = 0

    def _maybe_fail(self, work: Any) -> Any:
        self.attempts += 1
        if self.attempts <= self.failures:
            if self.after_work:
                work()
            if self.wrapped:
                raise TransientStorageError("lost the connection to the test server")
            raise ConnectionResetError("connection reset by peer")
        return work()

    def store(self, node_args: Any, flow_name: str, task_name: str, task_id: str, result: Any) -> str:
        return self._maybe_fail(lambda: super(Flaky, self).store(node_args, flow_name, task_name, task_id, result))  # type: ignore[no-any-return]

    def retrieve(self, flow_name: str, task_name: str, task_id: str) -> Any:
        return self._maybe_fail(lambda: super(Flaky, self).retrieve(flow_name, task_name, task_id))

    def delete(self, flow_name: str, task_name: str, task_id: str) -> None:
        self._maybe_fail(lambda: super(Flaky, self).delete(flow_name, task_name, task_id))


class NeedsPath(InMemoryStorage):
    """An adapter with a required option."""

    def __init__(self, path: str) -> None:
        super().__init__(json=True)
        self.path = path
