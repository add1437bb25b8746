"""Adapters that fail for real, for the executor's storage fault tests."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from selinon.storage import ExcInfo
from selinon.storages.memory import InMemoryStorage


class Faulty(InMemoryStorage):
    """Raises a lost connection on its first ``fail_store`` stores and ``fail_retrieve`` retrieves, having done
    nothing; every call is counted in ``calls``."""

    thread_safe = True

    def __init__(self, fail_store: int = 0, fail_retrieve: int = 0, fail_store_error: int = 0) -> None:
        super().__init__(json=True)
        self.left = {"store": fail_store, "retrieve": fail_retrieve, "store_error": fail_store_error}
        self.calls: Counter[str] = Counter()
        self._fault_lock = threading.Lock()

    def _fault(self, call: str) -> None:
        with self._fault_lock:
            self.calls[call] += 1
            if self.left[call] > 0:
                self.left[call] -= 1
                raise ConnectionResetError(f"{call}: connection reset by peer (injected)")

    def store(self, node_args: Any, flow_name: str, task_name: str, task_id: str, result: Any) -> str:
        self._fault("store")
        return super().store(node_args, flow_name, task_name, task_id, result)

    def retrieve(self, flow_name: str, task_name: str, task_id: str) -> Any:
        self._fault("retrieve")
        return super().retrieve(flow_name, task_name, task_id)

    def store_error(self, node_args: Any, flow_name: str, task_name: str, task_id: str, exc_info: ExcInfo) -> str:
        self._fault("store_error")
        return super().store_error(node_args, flow_name, task_name, task_id, exc_info)


class NoErrors(InMemoryStorage):
    """An adapter written for Selinon 1.x that does not implement store_error."""

    def store_error(self, node_args: Any, flow_name: str, task_name: str, task_id: str, exc_info: ExcInfo) -> str:
        raise NotImplementedError()


class Paused(InMemoryStorage):
    """A retrieve that has read its record waits on ``release`` before it returns, once ``pause`` is set: the
    moment a store may overtake it."""

    thread_safe = True

    def __init__(self) -> None:
        super().__init__()
        self.pause = threading.Event()
        self.paused = threading.Event()
        self.release = threading.Event()

    def retrieve(self, flow_name: str, task_name: str, task_id: str) -> Any:
        result = super().retrieve(flow_name, task_name, task_id)
        if self.pause.is_set():
            self.paused.set()
            self.release.wait(10)
        return result
