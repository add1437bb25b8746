"""A storage that keeps results in this process's memory: for tests and the local executor."""

from __future__ import annotations

import copy
import json as jsonlib
import threading
from typing import Any

from selinon import jsonpolicy
from selinon.errors import SelinonMissingDataException
from selinon.storage import DataStorage, ExcInfo, describe_error


class InMemoryStorage(DataStorage):
    """Results in a dict keyed by task id.

    :param echo: print every stored result to standard output
    :param json: keep results as JSON text (every result is checked against the JSON policy either way, so that
        what a real storage refuses fails here too)
    """

    thread_safe = True

    def __init__(self, echo: bool = False, json: bool = False) -> None:
        self.echo = echo
        self.json = json
        self._records: dict[str, dict[str, Any]] = {}
        self._connected = False
        self._lock = threading.Lock()

    def connect(self) -> None:
        self._connected = True

    def disconnect(self) -> None:
        self._connected = False

    def is_connected(self) -> bool:
        return self._connected

    def store(self, node_args: Any, flow_name: str, task_name: str, task_id: str, result: Any) -> str:
        jsonpolicy.check(result)
        kept = jsonlib.dumps(result) if self.json else copy.deepcopy(result)
        record = {"flow_name": flow_name, "task_name": task_name, "node_args": node_args, "result": kept}
        with self._lock:
            self._records[task_id] = record
        if self.echo:
            print(f"{flow_name}/{task_name}/{task_id}: {jsonlib.dumps(result, default=repr)}")
        return task_id

    def retrieve(self, flow_name: str, task_name: str, task_id: str) -> Any:
        record = self._record(task_id)
        if "result" not in record:
            raise SelinonMissingDataException(f"task {task_id!r} failed; it has no result")
        return jsonlib.loads(record["result"]) if self.json else copy.deepcopy(record["result"])

    def delete(self, flow_name: str, task_name: str, task_id: str) -> None:
        with self._lock:
            if self._records.pop(task_id, None) is None:
                raise SelinonMissingDataException(f"no record for task id {task_id!r}")

    def store_error(self, node_args: Any, flow_name: str, task_name: str, task_id: str, exc_info: ExcInfo) -> str:
        record = {
            "flow_name": flow_name,
            "task_name": task_name,
            "node_args": node_args,
            "error": describe_error(exc_info),
        }
        with self._lock:
            self._records[task_id] = record
        return task_id

    def retrieve_error(self, flow_name: str, task_name: str, task_id: str) -> dict[str, str]:
        record = self._record(task_id)
        if "error" not in record:
            raise SelinonMissingDataException(f"task {task_id!r} has no error recorded")
        return dict(record["error"])

    def retrieve_owner(self, flow_name: str, task_name: str, task_id: str) -> tuple[str | None, str | None]:
        record = self._record(task_id)
        return record["flow_name"], record["task_name"]

    def _record(self, task_id: str) -> dict[str, Any]:
        with self._lock:
            record = self._records.get(task_id)
        if record is None:
            raise SelinonMissingDataException(f"no record for task id {task_id!r}")
        return record
