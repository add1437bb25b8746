"""Lifecycle events: what flows, dispatchers, tasks and storage calls do, told to ``selinon_event`` observers.

Both executors fire them from shared code (:class:`selinon.flows.dispatcher.FlowState` for dispatcher decisions,
:meth:`selinon.runtime.TaskRunner.attempt` for tries of tasks, :class:`selinon.pool.StoragePool` for storage
calls), so a flow tells the same story whichever runs it. docs/operating.md lists every event and its fields.

Each event carries a *context*, a ``str -> str`` mapping that observers use to tie events together (an
OpenTelemetry plugin keeps a ``traceparent`` there). A flow run and each try of a task have one: what its start
event's observers leave in it is given to every later event of that run or try, in whichever process, and is
where the runs and tries it starts begin from. It travels in the flow's state and in task messages, and only
when an observer wrote something into it.

With no observer registered, firing an event costs one look at the hook's implementations.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from selinon import plugins

FLOW_SCHEDULED = "flow.scheduled"
FLOW_STARTED = "flow.started"
FLOW_SUCCEEDED = "flow.succeeded"
FLOW_FAILED = "flow.failed"
DISPATCHER_PASS = "dispatcher.pass"
DISPATCHER_RETRY = "dispatcher.retry"
TASK_SCHEDULED = "task.scheduled"
SUBFLOW_SCHEDULED = "subflow.scheduled"
TASK_REUSED = "task.reused"
FALLBACK_STARTED = "fallback.started"
NODE_SUCCEEDED = "node.succeeded"
NODE_FAILED = "node.failed"
TASK_STARTED = "task.started"
TASK_SUCCEEDED = "task.succeeded"
TASK_RETRY = "task.retry"
TASK_FAILED = "task.failed"
#: Storage events are ``storage.`` and the ``storage_event`` name: connect, store, retrieve, delete, store_error
#: or retry.
STORAGE_PREFIX = "storage."

Observers = list[Any]


@dataclass(frozen=True)
class Scope:
    """The flow pass or the try of a task that is running in this context: storage calls it makes are its."""

    flow_id: str
    context: dict[str, str]


_scope: ContextVar[Scope | None] = ContextVar("selinon_event_scope", default=None)
_telling = threading.local()


def observers() -> Observers | None:
    """The ``selinon_event`` implementations, or None when there is none (then nothing needs to be built)."""
    return plugins.implementations("selinon_event") or None


def emit(
    event: str, context: dict[str, str] | None = None, exception: BaseException | None = None, **fields: Any
) -> None:
    """Tell every observer, if there is one; see :func:`tell`."""
    hooks = observers()
    if hooks is not None:
        tell(hooks, event, fields, {} if context is None else context, exception)


def tell(
    hooks: Observers,
    event: str,
    fields: dict[str, Any],
    context: dict[str, str],
    exception: BaseException | None = None,
) -> None:
    """Call each observer with the event; one that raises is logged once and counted, and changes nothing.

    Events that happen while an observer runs (its own storage calls, say) are not told: an observer never
    observes itself, and never loops."""
    if getattr(_telling, "active", False):
        return
    fields.setdefault("time", time.time())
    arguments = {"event": event, "fields": fields, "context": context, "exception": exception}
    _telling.active = True
    try:
        for impl in hooks:
            try:
                plugins.call(impl, arguments)
            except Exception as exc:
                plugins.observer_failed(impl, f"{type(exc).__name__}: {exc}", hook="selinon_event")
    finally:
        _telling.active = False


@contextlib.contextmanager
def scope(flow_id: str, context: dict[str, str]) -> Iterator[None]:
    """Storage calls made inside belong to this flow pass or try of a task (their events get its context)."""
    token = _scope.set(Scope(flow_id, context))
    try:
        yield
    finally:
        _scope.reset(token)


def current_scope() -> Scope | None:
    return _scope.get()
