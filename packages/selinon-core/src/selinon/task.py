"""The base class of user tasks, with Selinon 1.x's constructor and methods so existing tasks run unchanged."""

from __future__ import annotations

import abc
import logging
from typing import Any

from selinon.errors import NoParentNodeError, RequestError, Retry
from selinon.storage import DataStorage

__all__ = ["Retry", "SelinonTask"]


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

        return StoragePool.retrieve(self.flow_name, parent_name, self._parent_id(parent_name))

    def parent_flow_result(self, flow_names: str | list[str], task_name: str, index: int | None = None) -> Any:
        """The result of ``task_name`` that ran in a parent sub-flow (``flow_names``: its name, or the names down
        through nested sub-flows), passed with ``propagate_finished``; ``index`` picks one of several runs (by
        default the last one, as in Selinon 1.x)."""
        from selinon.pool import StoragePool

        path = [flow_names] if isinstance(flow_names, str) else list(flow_names)
        return StoragePool.retrieve(path[-1], task_name, self._subflow_task_id(path, task_name, index))

    def parent_task_exception(self, parent_name: str) -> BaseException:
        """The exception the parent task ``parent_name`` failed with; for fallbacks, whose parents are the nodes
        that failed. Raises :class:`~selinon.errors.RequestError` when that parent did not fail (or its failure
        was kept nowhere: see :mod:`selinon.failures`)."""
        return self._exception(self.flow_name, parent_name, self._parent_id(parent_name))

    def parent_flow_exception(
        self, flow_names: str | list[str], task_name: str, index: int | None = None
    ) -> BaseException:
        """The exception ``task_name`` failed with in a failed parent sub-flow (the fallback's parent)."""
        path = [flow_names] if isinstance(flow_names, str) else list(flow_names)
        return self._exception(path[-1], task_name, self._subflow_task_id(path, task_name, index))

    def _parent_id(self, parent_name: str) -> str:
        try:
            found = self.parent[parent_name]
        except KeyError:
            parents = ", ".join(self.parent) or "none (it was started by a starting edge)"
            raise NoParentNodeError(
                f"task {self.task_name!r} in flow {self.flow_name!r} has no parent {parent_name!r}; its parents: "
                f"{parents}"
            ) from None
        if not isinstance(found, str):
            raise NoParentNodeError(
                f"{parent_name!r} is a sub-flow, not a task, among the parents of task {self.task_name!r}; read its "
                "tasks with parent_flow_result() or parent_flow_exception()"
            )
        return found

    def _subflow_task_id(self, path: list[str], task_name: str, index: int | None) -> str:
        found: Any = self.parent
        for name in path:
            found = found.get(name) if isinstance(found, dict) else None
        ids = found.get(task_name) if isinstance(found, dict) else None
        if not isinstance(ids, list) or not ids:
            raise NoParentNodeError(
                f"task {self.task_name!r} in flow {self.flow_name!r} has no parent task {task_name!r} under "
                f"{'/'.join(path)}; sub-flows pass their tasks with `propagate_finished:` (or the compound form), "
                "their failed ones to fallbacks"
            )
        try:
            return str(ids[-1 if index is None else index])
        except IndexError:
            raise NoParentNodeError(
                f"index {index} of {task_name!r} under {'/'.join(path)}: it ran {len(ids)} time(s)"
            ) from None

    def _exception(self, flow_name: str, task_name: str, task_id: str) -> BaseException:
        from selinon import failures

        found = failures.find(flow_name, task_name, task_id)
        if found is None:
            raise RequestError(
                f"task {task_name!r} ({task_id}) did not fail, or its failure was kept nowhere this task can read: "
                "give it a storage that keeps errors (every first-party adapter does)"
            )
        return found

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
