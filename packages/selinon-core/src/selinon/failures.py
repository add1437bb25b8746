"""Where a failed task's exception is found again: for the fallbacks that handle it, through
:meth:`SelinonTask.parent_task_exception <selinon.task.SelinonTask.parent_task_exception>` (as in Selinon 1.x).

Looked up in this order: the exception itself, when the task failed in this process (always so with ``selinon
run``); the error record its storage kept (``store_error``); then the other ``sources`` (on Celery, the result
backend, which keeps the failure's type and message). A rebuilt exception has the original class when its module
is already imported here, else a class of the same name made for it; modules are never imported from a record.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable

from selinon.errors import ConfigurationError, SelinonMissingDataException, StorageError

log = logging.getLogger(__name__)

#: More places to look, last: ``source(task_id)`` gives ``{"type": "module.Name", "message": ...}`` or None.
sources: list[Callable[[str], dict[str, str] | None]] = []

_LIMIT = 1024  # the failures kept in memory: enough for the fallbacks of the flows running in one process
_recent: OrderedDict[str, BaseException] = OrderedDict()
_lock = threading.Lock()


def remember(task_id: str, exc: BaseException) -> None:
    with _lock:
        _recent[task_id] = exc
        _recent.move_to_end(task_id)
        while len(_recent) > _LIMIT:
            _recent.popitem(last=False)


def find(flow_name: str, task_name: str, task_id: str) -> BaseException | None:
    """The exception that task ``task_id`` failed with, or None when no place kept it."""
    with _lock:
        found = _recent.get(task_id)
    if found is not None:
        return found
    from selinon.pool import StoragePool

    try:
        return rebuild(StoragePool.retrieve_error(flow_name, task_name, task_id))
    except (SelinonMissingDataException, ConfigurationError, StorageError):
        pass  # no storage, an adapter that keeps no errors, or no error stored under this id
    for source in sources:
        try:
            record = source(task_id)
        except Exception as exc:  # a source that cannot answer now (an app whose backend is gone) is passed over
            log.debug("task %s: a failure source did not answer: %s", task_id, exc)
            continue
        if record is not None:
            return rebuild(record)
    return None


def rebuild(record: dict[str, str]) -> BaseException:
    """An exception of the recorded type with the recorded message."""
    module, _, qualname = record.get("type", "builtins.Exception").rpartition(".")
    message = record.get("message", "")
    found: object = sys.modules.get(module)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    if isinstance(found, type) and issubclass(found, BaseException):
        cls: type[BaseException] = found
    else:
        cls = type(qualname.rpartition(".")[2] or "Exception", (Exception,), {"__module__": module})
    try:
        return cls(message)
    except Exception:  # a constructor that wants other arguments
        exc = cls.__new__(cls)
        exc.args = (message,)
        return exc
