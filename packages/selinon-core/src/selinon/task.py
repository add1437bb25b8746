"""The base class of user tasks, with Selinon 1.x's constructor and methods so existing tasks run unchanged."""

from __future__ import annotations

import abc
import logging
from typing import Any

from selinon.errors import SelinonError
from selinon.storage import DataStorage


class Retry(Exception):  # Selinon 1.x's name
    """Raised by :meth:`SelinonTask.retry`: run the task again after ``countdown`` seconds (within max_retry)."""

    def __init__(self, countdown: float | None = None) -> None:
        super().__init__(f"retry requested (countdown {countdown})")
        self.countdown = countdown


class SelinonTask(abc.ABC):
    """Subclass it and implement :meth:`run`; what ``run`` returns is stored in the task's storage.

    :param flow_name: the flow this task runs in
    :param task_name: the task's name in the YAML (several names may share one class)
    :param parent: parent node name -> the id of the parent instance that triggered this task (for a sub-flow
        with ``propagate_finished``: its tasks' ids, nested by sub-flow)
    :param task_id: this task's id, the key of its stored result (a uuid4 string; kept across retries)
    :param dispatcher_id: the id of this run of the flow
    """

    def __init__(self, flow_name: str, task_name: str, parent: dict[str, Any], task_id: str, dispatcher_id: str):
        self.flow_name = flow_name
        self.task_name = task_name
        self.parent = parent
        self.task_id = task_id
        self.dispatcher_id = dispatcher_id
        self.log = logging.getLogger(f"{__name__}.{task_name}")

    @abc.abstractmethod
    def run(self, node_args: Any) -> Any:
        """Do the work; the return value is the task's result."""

    def parent_task_result(self, parent_name: str) -> Any:
        """The stored result of the parent task ``parent_name``, read through the storage pool."""
        from selinon.pool import StoragePool

        try:
            parent_id = self.parent[parent_name]
        except KeyError:
            parents = ", ".join(self.parent) or "none (it was started by a starting edge)"
            raise SelinonError(
                f"task {self.task_name!r} in flow {self.flow_name!r} has no parent {parent_name!r}; its parents: "
                f"{parents}"
            ) from None
        return StoragePool.retrieve(self.flow_name, parent_name, parent_id)

    def parent_flow_result(self, flow_names: str | list[str], task_name: str, index: int | None = None) -> Any:
        """The result of ``task_name`` that ran in a parent sub-flow (``flow_names``: its name, or the names down
        through nested sub-flows), passed with ``propagate_finished``; ``index`` picks one of several runs."""
        from selinon.pool import StoragePool

        path = [flow_names] if isinstance(flow_names, str) else list(flow_names)
        found: Any = self.parent
        for name in path:
            found = found.get(name) if isinstance(found, dict) else None
        ids = found.get(task_name) if isinstance(found, dict) else None
        if not isinstance(ids, list) or not ids:
            raise SelinonError(
                f"task {self.task_name!r} in flow {self.flow_name!r} has no parent task {task_name!r} under "
                f"{'/'.join(path)}; sub-flows pass their tasks with `propagate_finished:` (or the compound form)"
            )
        if index is None and len(ids) != 1:
            raise SelinonError(f"{task_name!r} ran {len(ids)} times in {'/'.join(path)}; pass index=")
        return StoragePool.retrieve(path[-1], task_name, ids[0 if index is None else index])

    @property
    def storage(self) -> DataStorage | None:
        """The task's storage adapter, connected (also when it is read-only); ``None`` when it has none."""
        from selinon.pool import StoragePool

        if StoragePool.get_storage_name_by_task_name(self.task_name) is None:
            return None
        return StoragePool.get_storage_by_task_name(self.task_name)

    @staticmethod
    def retry(countdown: float | None = None) -> None:
        """Run this task again after ``countdown`` seconds (default: its ``retry_countdown``); counts as a try."""
        raise Retry(countdown)
